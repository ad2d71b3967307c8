// libFuzzer target: arbitrary bytes from a client that has not authenticated,
// through the handler a server with -Y (ascii auth, text) or -S (SASL,
// binary) gives a new connection (protocol::make_handler).
//
// Besides crashes, sanitizer reports and hangs, it checks the one promise of
// the gate: nothing reaches the engine or the server's services (stats,
// verbosity, admin commands) before the client has authenticated with the
// right credentials. The first input byte picks the gate and how the rest is
// split into reads.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <unistd.h>

#include "engine/engine.h"
#include "protocol/ascii_auth.h"
#include "protocol/handler.h"
#include "protocol/output.h"
#include "protocol/sasl.h"
#include "protocol/services.h"
#include "fuzz_support.h"

namespace {

using memkeep::protocol::SaslSession;

constexpr std::string_view kUser = "fuzzuser";
constexpr std::string_view kPassword = "fuzzpass";

// PLAIN ("\0user\0password" in one step) and a two-step mechanism, so that
// the Continue path runs too. Remembers whether it ever said kOk.
class FakeSaslSession : public SaslSession {
public:
    explicit FakeSaslSession(bool* succeeded) : succeeded_(succeeded) {}
    bool list_mechanisms(std::string* out) override {
        *out = "PLAIN TWOSTEP";
        return true;
    }
    Result start(std::string_view mechanism, std::string_view data, std::string* challenge) override {
        step_expected_ = false;
        if (mechanism == "PLAIN") return ok_if(data == std::string("\0fuzzuser\0fuzzpass", 18));
        if (mechanism == "TWOSTEP" && data == kUser) {
            *challenge = "password?";
            step_expected_ = true;
            return Result::kContinue;
        }
        return Result::kFailed;
    }
    Result step(std::string_view data, std::string*) override {
        if (!step_expected_) return Result::kFailed;
        step_expected_ = false;
        return ok_if(data == kPassword);
    }

private:
    Result ok_if(bool right) {
        if (right) *succeeded_ = true;
        return right ? Result::kOk : Result::kFailed;
    }
    bool* succeeded_;
    bool step_expected_ = false;
};

class FakeSaslProvider : public memkeep::protocol::SaslProvider {
public:
    std::unique_ptr<SaslSession> new_session() override { return std::make_unique<FakeSaslSession>(&succeeded); }
    bool succeeded = false;
};

// Counts every call a handler makes into the server; with -S or -Y none may
// come before authentication.
class GatedServices : public memkeep::fuzz::FakeServices {
public:
    bool collect_stats(std::string_view group, memkeep::protocol::StatLines& out) override {
        ++calls;
        return FakeServices::collect_stats(group, out);
    }
    void reset_stats() override { ++calls; }
    void set_verbosity(int) override { ++calls; }
    std::string admin_backup(std::string_view) override {
        ++calls;
        return "CLIENT_ERROR admin commands are not enabled";
    }
    std::string admin_replication(std::string_view, std::string_view) override {
        ++calls;
        return "ERROR";
    }
    const memkeep::protocol::AsciiAuthFile* ascii_auth() const override { return ascii; }
    memkeep::protocol::SaslProvider* sasl() override { return provider; }

    int calls = 0;
    const memkeep::protocol::AsciiAuthFile* ascii = nullptr;
    memkeep::protocol::SaslProvider* provider = nullptr;
};

const memkeep::protocol::AsciiAuthFile& auth_file() {
    static memkeep::protocol::AsciiAuthFile file;
    static bool loaded = [] {
        char path[] = "/tmp/memkeep-fuzz-auth-XXXXXX";
        int fd = mkstemp(path);
        std::string line = std::string(kUser) + ":" + std::string(kPassword) + "\n";
        if (fd < 0 || write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::abort();
        close(fd);
        std::string error;
        bool ok = file.load(path, &error);
        unlink(path);
        return ok;
    }();
    if (!loaded) std::abort();
    return file;
}

// What reaching the engine looks like in the worker's counters.
uint64_t engine_commands(const memkeep::engine::OpStats& stats) {
    return stats.cmd_get.get() + stats.cmd_set.get() + stats.cmd_flush.get() + stats.cmd_touch.get() +
           stats.cmd_meta.get() + stats.delete_hits.get() + stats.delete_misses.get() + stats.incr_hits.get() +
           stats.incr_misses.get() + stats.decr_hits.get() + stats.decr_misses.get();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    bool use_sasl = data[0] & 1;
    size_t piece = 1 + (data[0] >> 1) % 64;
    std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
    if (input.empty()) return 0;

    FakeSaslProvider provider;
    GatedServices services;
    if (use_sasl) {
        services.provider = &provider;
    } else {
        services.ascii = &auth_file();
    }
    memkeep::engine::OpStats stats;
    memkeep::protocol::HandlerContext context{memkeep::fuzz::shared_engine(), stats, services, 0};
    // As the server configures them: -S forces -B binary, -Y forces -B ascii.
    auto choice = use_sasl ? memkeep::protocol::ProtocolChoice::kBinary : memkeep::protocol::ProtocolChoice::kAscii;
    auto handler = memkeep::protocol::make_handler(choice, static_cast<unsigned char>(input[0]), context);
    auto* ascii_gate = dynamic_cast<memkeep::protocol::AsciiAuthHandler*>(handler.get());
    if (!use_sasl && !ascii_gate) std::abort();   // -Y must put the gate in front of every text connection

    memkeep::protocol::Output output;
    std::string buffer;
    bool ever_authenticated = false;
    for (size_t offset = 0; offset < input.size() && !handler->close_requested(); offset += piece) {
        buffer.append(input.substr(offset, piece));
        size_t consumed = handler->process(buffer, output, 1000, 1u << 20);
        buffer.erase(0, consumed);
        output.clear();
        ever_authenticated = ever_authenticated || (use_sasl ? provider.succeeded : ascii_gate->authenticated());
        if (!ever_authenticated && (engine_commands(stats) != 0 || services.calls != 0)) {
            std::fprintf(stderr, "a request reached the %s before authentication\n",
                         services.calls != 0 ? "server's services" : "engine");
            std::abort();
        }
    }
    return 0;
}
