// libFuzzer target: arbitrary bytes as one UDP datagram (-U), through
// UdpEndpoint::serve with a real engine behind it.
//
// Besides crashes, sanitizer reports and hangs, it checks the framing
// promises of net/udp_listener.h: every datagram sent is at most 1400 bytes
// and starts with the request's id, its sequence number 0..n-1 and the
// total n; a datagram whose header is short or says it is one of several
// gets no reply at all.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "engine/engine.h"
#include "net/udp_listener.h"
#include "protocol/services.h"
#include "fuzz_support.h"

namespace {

void fail(const char* what) {
    std::fprintf(stderr, "UDP framing broken: %s\n", what);
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static memkeep::fuzz::FakeServices services;
    static memkeep::engine::OpStats stats;
    static memkeep::net::UdpEndpoint endpoint(-1, {memkeep::fuzz::shared_engine(), stats, services, -1});
    if (size > 65507) return 0;   // the largest UDP payload
    std::string_view datagram(reinterpret_cast<const char*>(data), size);

    memkeep::net::UdpHeader request;
    bool framed = memkeep::net::parse_udp_header(datagram, &request) && datagram.size() > memkeep::net::kUdpHeaderSize &&
                  request.total == 1;
    size_t sent = 0;
    uint16_t expected_total = 0;
    endpoint.serve(datagram, [&](std::string_view packet) {
        if (!framed) fail("a reply to a datagram that must be dropped");
        if (packet.size() > memkeep::net::kUdpMaxDatagram) fail("a datagram over 1400 bytes");
        memkeep::net::UdpHeader reply;
        if (!memkeep::net::parse_udp_header(packet, &reply)) fail("a reply shorter than its header");
        if (reply.request_id != request.request_id) fail("the reply's request id differs");
        if (sent == 0) expected_total = reply.total;
        if (reply.total != expected_total || reply.sequence != sent || reply.total == 0) fail("sequence or total");
        if (reply.reserved != 0) fail("reserved field not 0");
        ++sent;
    });
    if (sent != expected_total) fail("fewer datagrams than the total announced");
    return 0;
}
