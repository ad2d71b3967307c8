// Unit tests for server/config.h: memcached-compatible command-line flags.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/config.h"

namespace memkeep::server {
namespace {

ParseOutcome parse(std::vector<std::string> args, Config* config) {
    args.insert(args.begin(), "memkeep");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    return parse_config(static_cast<int>(args.size()), argv.data(), config);
}

ParseOutcome parse(std::vector<std::string> args) {
    Config config;
    return parse(std::move(args), &config);
}

TEST(Config, Defaults) {
    Config c;
    ASSERT_EQ(parse({}, &c), ParseOutcome::kRun);
    EXPECT_EQ(c.port, 11211);
    EXPECT_EQ(c.listen_addresses, std::vector<std::string>{"127.0.0.1"});
    EXPECT_EQ(c.unix_socket, "");
    EXPECT_EQ(c.unix_mask, 0700u);
    EXPECT_EQ(c.memory_limit_mb, 64u);
    EXPECT_EQ(c.memory_limit_bytes(), size_t{64} << 20);
    EXPECT_EQ(c.conn_limit, 1024);
    EXPECT_EQ(c.threads, 4);
    EXPECT_EQ(c.max_item_size, size_t{1} << 20);
    EXPECT_FALSE(c.disable_evictions);
    EXPECT_FALSE(c.disable_cas);
    EXPECT_EQ(c.max_reqs_per_event, 20);
    EXPECT_EQ(c.listen_backlog, 1024);
    EXPECT_FALSE(c.daemonize);
    EXPECT_EQ(c.pidfile, "");
    EXPECT_EQ(c.user, "");
    EXPECT_EQ(c.verbosity, 0);
}

TEST(Config, EveryShortFlag) {
    Config c;
    ASSERT_EQ(parse({"-p", "12345", "-l", "0.0.0.0,::1", "-s", "/tmp/mk.sock", "-a", "0755", "-m", "128",
                     "-c", "10", "-t", "2", "-I", "2m", "-M", "-C", "-R", "5", "-b", "50", "-d", "-P",
                     "/tmp/mk.pid", "-u", "nobody", "-v"},
                    &c),
              ParseOutcome::kRun);
    EXPECT_EQ(c.port, 12345);
    EXPECT_EQ(c.listen_addresses, (std::vector<std::string>{"0.0.0.0", "::1"}));
    EXPECT_EQ(c.unix_socket, "/tmp/mk.sock");
    EXPECT_EQ(c.unix_mask, 0755u);
    EXPECT_EQ(c.memory_limit_mb, 128u);
    EXPECT_EQ(c.memory_limit_bytes(), size_t{128} << 20);
    EXPECT_EQ(c.conn_limit, 10);
    EXPECT_EQ(c.threads, 2);
    EXPECT_EQ(c.max_item_size, size_t{2} << 20);
    EXPECT_TRUE(c.disable_evictions);
    EXPECT_TRUE(c.disable_cas);
    EXPECT_EQ(c.max_reqs_per_event, 5);
    EXPECT_EQ(c.listen_backlog, 50);
    EXPECT_TRUE(c.daemonize);
    EXPECT_EQ(c.pidfile, "/tmp/mk.pid");
    EXPECT_EQ(c.user, "nobody");
    EXPECT_EQ(c.verbosity, 1);
}

TEST(Config, EveryLongFlag) {
    Config c;
    ASSERT_EQ(parse({"--port", "1", "--listen", "10.0.0.1", "--unix-socket", "/tmp/s", "--unix-mask", "600",
                     "--memory-limit", "16", "--conn-limit", "3", "--threads", "1", "--max-item-size", "512k",
                     "--disable-evictions", "--disable-cas", "--max-reqs-per-event", "7", "--listen-backlog",
                     "9", "--daemon", "--pidfile", "/tmp/p", "--user", "u", "--verbose"},
                    &c),
              ParseOutcome::kRun);
    EXPECT_EQ(c.port, 1);
    EXPECT_EQ(c.listen_addresses, std::vector<std::string>{"10.0.0.1"});
    EXPECT_EQ(c.unix_socket, "/tmp/s");
    EXPECT_EQ(c.unix_mask, 0600u);
    EXPECT_EQ(c.memory_limit_mb, 16u);
    EXPECT_EQ(c.conn_limit, 3);
    EXPECT_EQ(c.threads, 1);
    EXPECT_EQ(c.max_item_size, 512u * 1024);
    EXPECT_TRUE(c.disable_evictions);
    EXPECT_TRUE(c.disable_cas);
    EXPECT_EQ(c.max_reqs_per_event, 7);
    EXPECT_EQ(c.listen_backlog, 9);
    EXPECT_TRUE(c.daemonize);
    EXPECT_EQ(c.pidfile, "/tmp/p");
    EXPECT_EQ(c.user, "u");
    EXPECT_EQ(c.verbosity, 1);
}

TEST(Config, RepeatedVerbose) {
    Config c;
    ASSERT_EQ(parse({"-vv"}, &c), ParseOutcome::kRun);
    EXPECT_EQ(c.verbosity, 2);
    Config d;
    ASSERT_EQ(parse({"-v", "-v"}, &d), ParseOutcome::kRun);
    EXPECT_EQ(d.verbosity, 2);
}

TEST(Config, ListenAddressesSkipEmptyParts) {
    Config c;
    ASSERT_EQ(parse({"-l", "a,,b,"}, &c), ParseOutcome::kRun);
    EXPECT_EQ(c.listen_addresses, (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(parse({"-l", ","}), ParseOutcome::kExitFailure);
}

TEST(Config, ItemSizeSuffixesAndLimits) {
    struct Case {
        const char* text;
        size_t bytes;
    } ok[] = {{"1024", 1024}, {"1k", 1024}, {"1K", 1024}, {"512k", 512 * 1024},
              {"1m", 1 << 20}, {"1M", 1 << 20}, {"32m", 32u << 20}};
    for (const auto& c : ok) {
        SCOPED_TRACE(c.text);
        Config config;
        ASSERT_EQ(parse({"-I", c.text}, &config), ParseOutcome::kRun);
        EXPECT_EQ(config.max_item_size, c.bytes);
    }
    for (const char* bad : {"1023", "0", "abc", "1g", "1.5m", "-1", "", "k", "33m"}) {
        SCOPED_TRACE(bad);
        EXPECT_EQ(parse({"-I", bad}), ParseOutcome::kExitFailure);
    }
    // Up to 1024m with enough memory; never more.
    EXPECT_EQ(parse({"-m", "2048", "-I", "1024m"}), ParseOutcome::kRun);
    EXPECT_EQ(parse({"-m", "4096", "-I", "1025m"}), ParseOutcome::kExitFailure);
}

TEST(Config, ItemSizeAtMostHalfOfMemory) {
    EXPECT_EQ(parse({"-m", "2"}), ParseOutcome::kRun);
    EXPECT_EQ(parse({"-m", "1"}), ParseOutcome::kExitFailure);  // default -I 1m > 1/2 of 1m
    EXPECT_EQ(parse({"-m", "1", "-I", "512k"}), ParseOutcome::kRun);
    EXPECT_EQ(parse({"-m", "8", "-I", "4m"}), ParseOutcome::kRun);
    EXPECT_EQ(parse({"-m", "8", "-I", "5m"}), ParseOutcome::kExitFailure);
}

TEST(Config, BadValuesFail) {
    const std::vector<std::vector<std::string>> bad = {
        {"-m", "0"},     {"-m", "-1"},    {"-m", "abc"},       {"-m", "1099511627777"},
        {"-t", "0"},     {"-t", "257"},   {"-t", "x"},         {"-c", "0"},
        {"-R", "0"},     {"-b", "0"},     {"-p", "70000"},     {"-p", "-1"},
        {"-p", "http"},  {"-a", "0800"},  {"-a", "07777"},     {"-a", "rwx"},
        {"--bogus"},     {"-Z"},          {"-p"},              {"extra-positional"},
    };
    for (const auto& args : bad) {
        std::string joined;
        for (const auto& a : args) joined += a + " ";
        SCOPED_TRACE(joined);
        EXPECT_EQ(parse(args), ParseOutcome::kExitFailure);
    }
}

TEST(Config, BoundaryValuesAccepted) {
    Config c;
    ASSERT_EQ(parse({"-t", "256", "-p", "0", "-c", "1", "-R", "1", "-b", "1", "-a", "0"}, &c), ParseOutcome::kRun);
    EXPECT_EQ(c.threads, 256);
    EXPECT_EQ(c.port, 0);
    EXPECT_EQ(c.unix_mask, 0u);
    Config d;
    ASSERT_EQ(parse({"-p", "65535", "-t", "1"}, &d), ParseOutcome::kRun);
    EXPECT_EQ(d.port, 65535);
}

TEST(Config, VersionAndHelpExitSuccessfully) {
    EXPECT_EQ(parse({"-V"}), ParseOutcome::kExitSuccess);
    EXPECT_EQ(parse({"--version"}), ParseOutcome::kExitSuccess);
    EXPECT_EQ(parse({"-h"}), ParseOutcome::kExitSuccess);
    EXPECT_EQ(parse({"--help"}), ParseOutcome::kExitSuccess);
}

TEST(Config, UdpPort) {
    Config c;
    ASSERT_EQ(parse({}, &c), ParseOutcome::kRun);
    EXPECT_EQ(c.udp_port, 0);   // off by default, as memcached since 1.5.6
    Config d;
    ASSERT_EQ(parse({"-p", "2000", "-U", "3000"}, &d), ParseOutcome::kRun);
    EXPECT_EQ(d.udp_port, 3000);
    EXPECT_EQ(d.port, 2000);
    Config e;
    ASSERT_EQ(parse({"--udp-port", "3000"}, &e), ParseOutcome::kRun);
    EXPECT_EQ(e.port, 3000);    // -U without -p sets the TCP port too, as memcached
    EXPECT_EQ(parse({"-U", "70000"}), ParseOutcome::kExitFailure);
    EXPECT_EQ(parse({"-U", "abc"}), ParseOutcome::kExitFailure);
}

TEST(Config, AuthFile) {
    Config c;
    ASSERT_EQ(parse({"-Y", "/etc/memkeep-auth"}, &c), ParseOutcome::kRun);
    EXPECT_EQ(c.auth_file, "/etc/memkeep-auth");
    EXPECT_EQ(c.protocol, "ascii");   // -Y forces the text protocol
    Config d;
    ASSERT_EQ(parse({"--auth-file", "f", "-B", "ascii"}, &d), ParseOutcome::kRun);
    EXPECT_EQ(parse({"-Y", "f", "-B", "binary"}), ParseOutcome::kExitFailure);
    EXPECT_EQ(parse({"-Y", "f", "-B", "auto"}), ParseOutcome::kExitFailure);
    EXPECT_EQ(parse({"-Y", "f", "-U", "3000"}), ParseOutcome::kExitFailure);
    EXPECT_EQ(parse({"-Y", "f", "-U", "0"}), ParseOutcome::kRun);
}

TEST(Config, ParseSize) {
    size_t bytes = 7;
    EXPECT_TRUE(parse_size("2048", &bytes));
    EXPECT_EQ(bytes, 2048u);
    EXPECT_TRUE(parse_size("0", &bytes));
    EXPECT_EQ(bytes, 0u);
    EXPECT_TRUE(parse_size("1k", &bytes));
    EXPECT_EQ(bytes, 1024u);
    EXPECT_TRUE(parse_size("3K", &bytes));
    EXPECT_EQ(bytes, 3072u);
    EXPECT_TRUE(parse_size("1m", &bytes));
    EXPECT_EQ(bytes, 1048576u);
    EXPECT_TRUE(parse_size("2M", &bytes));
    EXPECT_EQ(bytes, 2097152u);
    EXPECT_TRUE(parse_size("999999999999", &bytes));
    EXPECT_EQ(bytes, 999999999999u);

    EXPECT_TRUE(parse_size("2g", &bytes));
    EXPECT_EQ(bytes, 2147483648u);

    bytes = 7;
    for (const char* bad : {"", "k", "m", "g", "1kb", "1mk", "-1", "+1", "1.5", " 1", "1 ", "0x10",
                            "1000000000000"}) {
        SCOPED_TRACE(bad);
        EXPECT_FALSE(parse_size(bad, &bytes));
    }
    EXPECT_EQ(bytes, 7u);
}

}  // namespace
}  // namespace memkeep::server

namespace memkeep::server {
namespace {

// memcached 1.6.18 refuses -S with -U (exit 64): a datagram has no
// connection to authenticate, so UDP would be a way around SASL.
TEST(Config, SaslWithUdpIsRefused) {
    EXPECT_EQ(parse({"-S", "-U", "11211"}), ParseOutcome::kExitFailure);
    EXPECT_EQ(parse({"-S", "-U", "0"}), ParseOutcome::kRun);
    EXPECT_EQ(parse({"-U", "11211"}), ParseOutcome::kRun);
}

}  // namespace
}  // namespace memkeep::server
