// Unit tests for server/process_setup.h: paths made absolute before -d's
// chdir("/"), and the open-file headroom above -c.

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "server/process_setup.h"

namespace memkeep::server {
namespace {

TEST(ProcessSetup, RelativePathsBecomeAbsoluteAgainstTheStartDirectory) {
    std::string cwd = std::filesystem::current_path().string();
    Config config;
    config.data_dir = "data/./store";
    config.pidfile = "run/memkeep.pid";
    config.tls_cert = "../cert.pem";
    config.tls_key = "/etc/key.pem";
    config.auth_file = "auth";
    config.unix_socket = "mk.sock";
    make_paths_absolute(&config);
    EXPECT_EQ(config.data_dir, cwd + "/data/store");
    EXPECT_EQ(config.pidfile, cwd + "/run/memkeep.pid");
    EXPECT_EQ(config.tls_cert, std::filesystem::path(cwd).parent_path().string() + "/cert.pem");
    EXPECT_EQ(config.tls_key, "/etc/key.pem");
    EXPECT_EQ(config.auth_file, cwd + "/auth");
    EXPECT_EQ(config.unix_socket, cwd + "/mk.sock");
    EXPECT_EQ(config.tls_ca, "");   // unset stays unset
}

TEST(ProcessSetup, HeadroomCoversThreadsAndTheStore) {
    Config memory;
    memory.threads = 4;
    Config durable = memory;
    durable.storage = "durable";
    EXPECT_EQ(open_file_headroom(memory), 32 + 2 * 4);
    EXPECT_EQ(open_file_headroom(durable), 32 + 2 * 4 + 256);
}

}  // namespace
}  // namespace memkeep::server
