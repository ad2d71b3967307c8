// Unit tests for protocol/ascii_auth.h: the -Y file format, credential
// checks and the gate in front of TextHandler.

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "protocol/ascii_auth.h"
#include "protocol/text_handler.h"

namespace memkeep::protocol {
namespace {

using Entries = std::vector<std::pair<std::string, std::string>>;

class FakeServices : public ServerServices {
public:
    explicit FakeServices(const AsciiAuthFile* auth) : auth_(auth) {}
    bool collect_stats(std::string_view, StatLines&) override { return true; }
    void reset_stats() override {}
    void set_verbosity(int) override {}
    void log_request(int, std::string_view) override {}
    bool verbose_requests() const override { return false; }
    std::string admin_backup(std::string_view) override { return ""; }
    const AsciiAuthFile* ascii_auth() const override { return auth_; }

private:
    const AsciiAuthFile* auth_;
};

std::string write_temp(const std::string& text) {
    char path[] = "/tmp/memkeep-auth-test-XXXXXX";
    int fd = ::mkstemp(path);
    EXPECT_GE(fd, 0);
    ::close(fd);
    std::ofstream(path) << text;
    return path;
}

std::string drain(Output& out) {
    std::string text;
    iovec iov[64];
    while (!out.empty()) {
        int n = out.gather(iov, 64);
        size_t bytes = 0;
        for (int i = 0; i < n; ++i) {
            text.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
            bytes += iov[i].iov_len;
        }
        out.consume(bytes);
    }
    return text;
}

TEST(AsciiAuthFile, ParsesUserPasswordLines) {
    Entries entries;
    ASSERT_TRUE(AsciiAuthFile::parse("alice:secret\nbob:a:b c\r\ncarol:\n:nouser", &entries));
    EXPECT_EQ(entries, (Entries{{"alice", "secret"}, {"bob", "a:b c"}, {"carol", ""}, {"", "nouser"}}));
    ASSERT_TRUE(AsciiAuthFile::parse("", &entries));
    EXPECT_TRUE(entries.empty());
    EXPECT_FALSE(AsciiAuthFile::parse("alice:secret\nnocolon\n", &entries));
    EXPECT_FALSE(AsciiAuthFile::parse("alice:secret\n\nbob:x\n", &entries));  // empty line, as memcached
}

TEST(AsciiAuthFile, LoadCheckReload) {
    std::string path = write_temp("alice:secret\nbob:hunter2\n");
    AsciiAuthFile auth;
    std::string error;
    ASSERT_TRUE(auth.load(path, &error)) << error;
    EXPECT_TRUE(auth.check("alice", "secret"));
    EXPECT_TRUE(auth.check("bob", "hunter2"));
    EXPECT_FALSE(auth.check("alice", "hunter2"));
    EXPECT_FALSE(auth.check("alice", "secre"));
    EXPECT_FALSE(auth.check("ALICE", "secret"));
    EXPECT_FALSE(auth.check("", ""));

    std::ofstream(path) << "carol:x\n";
    ASSERT_TRUE(auth.reload(&error));
    EXPECT_FALSE(auth.check("alice", "secret"));
    EXPECT_TRUE(auth.check("carol", "x"));

    // A broken or missing file keeps what was loaded.
    std::ofstream(path) << "broken\n";
    EXPECT_FALSE(auth.reload(&error));
    EXPECT_NE(error.find(path), std::string::npos);
    std::remove(path.c_str());
    EXPECT_FALSE(auth.reload(&error));
    EXPECT_NE(error.find(path), std::string::npos);
    EXPECT_TRUE(auth.check("carol", "x"));
}

TEST(AsciiAuthFile, MissingFileNamesIt) {
    AsciiAuthFile auth;
    std::string error;
    EXPECT_FALSE(auth.load("/nonexistent/memkeep-auth", &error));
    EXPECT_NE(error.find("/nonexistent/memkeep-auth"), std::string::npos);
    EXPECT_FALSE(auth.check("a", "b"));
}

class AsciiAuthHandlerTest : public ::testing::Test {
protected:
    AsciiAuthHandlerTest() : engine_(engine::EngineConfig{}), services_(&auth_) {
        std::string path = write_temp("alice:secret\n");
        std::string error;
        EXPECT_TRUE(auth_.load(path, &error));
        std::remove(path.c_str());
        handler_ = make_handler(ProtocolChoice::kAscii, 's', context());
    }
    HandlerContext context() { return HandlerContext{engine_, stats_, services_, -1}; }

    // Feeds `input` (in pieces of `step` bytes, keeping what is not consumed)
    // and returns the replies.
    std::string feed(std::string_view input, size_t step = SIZE_MAX) {
        Output out;
        std::string pending;
        for (size_t at = 0; at < input.size(); at += step) {
            pending.append(input.substr(at, step));
            size_t used = handler_->process(pending, out, SIZE_MAX, SIZE_MAX);
            pending.erase(0, used);
        }
        return drain(out);
    }

    engine::Engine engine_;
    engine::OpStats stats_;
    AsciiAuthFile auth_;
    FakeServices services_;
    std::unique_ptr<Handler> handler_;
};

TEST_F(AsciiAuthHandlerTest, RefusesUntilAuthenticated) {
    EXPECT_EQ(feed("get a\r\nquit\r\nmn\r\n"),
              "CLIENT_ERROR unauthenticated\r\nCLIENT_ERROR unauthenticated\r\nCLIENT_ERROR unauthenticated\r\n");
    EXPECT_FALSE(handler_->close_requested());
    EXPECT_EQ(feed("set x 0 0 11\r\nalice wrong\r\nget a\r\n"),
              "CLIENT_ERROR authentication failure\r\nCLIENT_ERROR unauthenticated\r\n");
    EXPECT_EQ(feed("set x 0 0 12\r\nalice secret\r\nset a 0 0 1\r\nv\r\nget a\r\n"),
              "STORED\r\nSTORED\r\nVALUE a 0 1\r\nv\r\nEND\r\n");
    EXPECT_EQ(stats_.auth_cmds.get(), 2u);
    EXPECT_EQ(stats_.auth_errors.get(), 1u);
    EXPECT_EQ(feed("quit\r\n"), "");
    EXPECT_TRUE(handler_->close_requested());
}

TEST_F(AsciiAuthHandlerTest, ByteAtATime) {
    EXPECT_EQ(feed("set x 0 0 12\r\nalice secret\r\nget a\r\n", 1), "STORED\r\nEND\r\n");
}

TEST_F(AsciiAuthHandlerTest, FormatErrors) {
    EXPECT_EQ(feed("set x 0 0 5\r\nalice\r\n"), "CLIENT_ERROR bad authentication token format\r\n");
    EXPECT_EQ(feed("set x 0 0 3\r\nabcde"), "CLIENT_ERROR bad command line termination\r\n");
    EXPECT_EQ(feed("set x 0 0\r\nset x 0 0 -1\r\nadd x 0 0 1\r\n"),
              "CLIENT_ERROR unauthenticated\r\nCLIENT_ERROR unauthenticated\r\nCLIENT_ERROR unauthenticated\r\n");
    EXPECT_FALSE(handler_->close_requested());
    // An oversized payload is not a password: refused and closed.
    EXPECT_EQ(feed("set x 0 0 100000\r\n"), "CLIENT_ERROR bad authentication token format\r\n");
    EXPECT_TRUE(handler_->close_requested());
}

TEST_F(AsciiAuthHandlerTest, LongLineWithoutNewlineCloses) {
    EXPECT_EQ(feed(std::string(2049, 'x')), "");
    EXPECT_TRUE(handler_->close_requested());
}

TEST_F(AsciiAuthHandlerTest, RequestLimitCountsGateLines) {
    Output out;
    std::string input = "get a\r\nget b\r\nget c\r\n";
    size_t used = handler_->process(input, out, 2, SIZE_MAX);
    EXPECT_EQ(used, 14u);
    EXPECT_TRUE(handler_->stopped_at_limit());
    EXPECT_EQ(drain(out), "CLIENT_ERROR unauthenticated\r\nCLIENT_ERROR unauthenticated\r\n");
}

TEST_F(AsciiAuthHandlerTest, UnreadRefusalsStopAtAFewKilobytesBeforeAuthentication) {
    // A client that has not authenticated and does not read its replies:
    // the handler stops once about 4 KB of them wait (not at the
    // connection's 1 MB output limit), so the connection stops reading.
    Output out;
    std::string input;
    for (int i = 0; i < 10000; ++i) input += "get a\r\n";
    size_t used = handler_->process(input, out, SIZE_MAX, 1 << 20);
    EXPECT_TRUE(handler_->stopped_at_limit());
    EXPECT_LT(used, input.size());
    EXPECT_GE(out.pending_bytes(), 4096u);
    EXPECT_LT(out.pending_bytes(), 4096u + 64);
    // Once authenticated, the connection's own limit applies again.
    Output more;
    handler_->process("set x 0 0 12\r\nalice secret\r\n", more, SIZE_MAX, 1 << 20);
    std::string gets;
    for (int i = 0; i < 10000; ++i) gets += "get a\r\n";
    EXPECT_EQ(handler_->process(gets, more, SIZE_MAX, 1 << 20), gets.size());
}

TEST(AsciiAuthHandler, NotUsedWithoutAuthFile) {
    engine::Engine engine{engine::EngineConfig{}};
    engine::OpStats stats;
    FakeServices services(nullptr);
    auto handler = make_handler(ProtocolChoice::kAscii, 'g', HandlerContext{engine, stats, services, -1});
    EXPECT_NE(dynamic_cast<TextHandler*>(handler.get()), nullptr);
}

}  // namespace
}  // namespace memkeep::protocol
