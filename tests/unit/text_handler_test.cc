// Unit tests for protocol/text_handler.h: a multi-key get that stops at the
// connection's output limit and resumes at the key it stopped at.

#include <gtest/gtest.h>
#include <sys/uio.h>

#include <string>

#include "engine/engine.h"
#include "protocol/text_handler.h"

namespace memkeep::protocol {
namespace {

class NoServices : public ServerServices {
public:
    bool collect_stats(std::string_view, StatLines&) override { return true; }
    void reset_stats() override {}
    void set_verbosity(int) override {}
    void log_request(int, std::string_view) override {}
    bool verbose_requests() const override { return false; }
    std::string admin_backup(std::string_view) override { return ""; }
};

// Writes everything `out` holds (as the socket would take it) and returns it.
std::string write_all(Output& out) {
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

class TextHandlerTest : public ::testing::Test {
protected:
    TextHandlerTest() : handler_(HandlerContext{engine_, stats_, services_, -1}) {}

    std::string run(std::string_view input, size_t output_limit = SIZE_MAX) {
        Output out;
        EXPECT_EQ(handler_.process(input, out, SIZE_MAX, output_limit), input.size());
        return write_all(out);
    }

    engine::Engine engine_{engine::EngineConfig{}};
    engine::OpStats stats_;
    NoServices services_;
    TextHandler handler_;
};

TEST_F(TextHandlerTest, AGetStopsAtTheOutputLimitAndResumesAtTheNextKey) {
    std::string value(1000, 'v');
    for (char k = 'a'; k <= 'e'; ++k) {
        run(std::string("set ") + k + " 0 0 1000\r\n" + value + "\r\n");
    }
    std::string line = "get a b nothere c d e\r\nget a\r\n";
    std::string expected;
    for (char k : std::string("abcde")) expected += std::string("VALUE ") + k + " 0 1000\r\n" + value + "\r\n";
    expected += "END\r\n";
    std::string single = "VALUE a 0 1000\r\n" + value + "\r\nEND\r\n";

    // With a 2500-byte limit the get stops after the third value (a, b, the
    // miss, c), leaves its line unconsumed, and the next call goes on at d
    // without fetching a, b or the miss again (the hit and miss counts).
    std::string got;
    std::string input = line;
    int calls = 0;
    while (!input.empty() && calls < 10) {
        Output out;
        size_t used = handler_.process(input, out, SIZE_MAX, 2500);
        if (calls == 0) {
            EXPECT_EQ(used, 0u);
            EXPECT_TRUE(handler_.stopped_at_limit());
            EXPECT_FALSE(handler_.waiting_for_memory());
        }
        input.erase(0, used);
        got += write_all(out);
        ++calls;
    }
    EXPECT_EQ(got, expected + single);
    EXPECT_EQ(calls, 2);   // the second call finishes the get and runs the next line
    EXPECT_EQ(stats_.get_hits.get(), 6u);
    EXPECT_EQ(stats_.get_misses.get(), 1u);
    // Without a limit it is one reply, as before.
    EXPECT_EQ(run(line), expected + single);
}

}  // namespace
}  // namespace memkeep::protocol
