// Unit tests for net/udp_listener.h: memcached's UDP frame header and how
// one datagram's replies are cut into framed datagrams (no sockets).

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "net/udp_listener.h"

namespace memkeep::net {
namespace {

class FakeServices : public protocol::ServerServices {
public:
    bool collect_stats(std::string_view, protocol::StatLines&) override { return true; }
    void reset_stats() override {}
    void set_verbosity(int) override {}
    void log_request(int, std::string_view) override {}
    bool verbose_requests() const override { return false; }
    std::string admin_backup(std::string_view) override { return ""; }
};

std::string frame(uint16_t id, std::string_view payload, uint16_t sequence = 0, uint16_t total = 1) {
    unsigned char header[kUdpHeaderSize];
    write_udp_header(UdpHeader{id, sequence, total, 0}, header);
    return std::string(reinterpret_cast<char*>(header), kUdpHeaderSize) + std::string(payload);
}

class UdpTest : public ::testing::Test {
protected:
    UdpTest() : engine_(engine::EngineConfig{}), endpoint_(-1, {engine_, stats_, services_, -1}) {}

    std::vector<std::string> serve(const std::string& datagram) {
        std::vector<std::string> sent;
        endpoint_.serve(datagram, [&](std::string_view packet) { sent.emplace_back(packet); });
        return sent;
    }

    engine::Engine engine_;
    engine::OpStats stats_;
    FakeServices services_;
    UdpEndpoint endpoint_;
};

TEST(UdpHeader, RoundTrip) {
    unsigned char bytes[8];
    write_udp_header(UdpHeader{0x1234, 0x0102, 0xfffe, 0}, bytes);
    EXPECT_EQ(std::string(reinterpret_cast<char*>(bytes), 8), std::string("\x12\x34\x01\x02\xff\xfe\x00\x00", 8));
    UdpHeader header;
    ASSERT_TRUE(parse_udp_header(std::string_view(reinterpret_cast<char*>(bytes), 8), &header));
    EXPECT_EQ(header.request_id, 0x1234);
    EXPECT_EQ(header.sequence, 0x0102);
    EXPECT_EQ(header.total, 0xfffe);
    EXPECT_FALSE(parse_udp_header("1234567", &header));
}

TEST_F(UdpTest, SetGetOneDatagramEach) {
    EXPECT_EQ(serve(frame(7, "set k 3 0 2\r\nhi\r\n")), std::vector<std::string>{frame(7, "STORED\r\n")});
    EXPECT_EQ(serve(frame(8, "get k\r\n")), std::vector<std::string>{frame(8, "VALUE k 3 2\r\nhi\r\nEND\r\n")});
    EXPECT_TRUE(serve(frame(9, "set q 0 0 1 noreply\r\nx\r\n")).empty());
}

TEST_F(UdpTest, LongReplyIsOneMessageOf1400ByteDatagrams) {
    std::string value(5000, 'v');
    serve(frame(1, "set big 0 0 5000\r\n" + value + "\r\n"));
    std::string expected = "VALUE big 0 5000\r\n" + value + "\r\nEND\r\n";
    auto sent = serve(frame(2, "get big\r\n"));
    size_t count = (expected.size() + kUdpMaxPayload - 1) / kUdpMaxPayload;
    ASSERT_EQ(sent.size(), count);
    for (size_t i = 0; i < count; ++i) {
        EXPECT_EQ(sent[i], frame(2, expected.substr(i * kUdpMaxPayload, kUdpMaxPayload), i, count));
        EXPECT_LE(sent[i].size(), kUdpMaxDatagram);
    }
}

TEST_F(UdpTest, DropsWhatMemcachedDrops) {
    EXPECT_TRUE(serve(std::string("\x00\x01\x00", 3)).empty());
    EXPECT_TRUE(serve(frame(1, "")).empty());
    EXPECT_TRUE(serve(frame(1, "get k\r\n", 0, 2)).empty());
    EXPECT_TRUE(serve(frame(1, "get k\r\n", 0, 0)).empty());
    // A request cut off at the end of the datagram: dropped, and the next
    // datagram does not continue it.
    EXPECT_TRUE(serve(frame(1, "set k 0 0 10\r\nabc")).empty());
    EXPECT_EQ(serve(frame(2, "defghij\r\n")), std::vector<std::string>{frame(2, "ERROR\r\n")});
    EXPECT_EQ(serve(frame(3, "get k\r\n")), std::vector<std::string>{frame(3, "END\r\n")});
}

TEST_F(UdpTest, BinaryRequest) {
    std::string noop("\x80\x0a", 2);
    noop.append(22, '\0');
    std::string reply("\x81\x0a", 2);
    reply.append(22, '\0');
    EXPECT_EQ(serve(frame(5, noop)), std::vector<std::string>{frame(5, reply)});
}

}  // namespace
}  // namespace memkeep::net
