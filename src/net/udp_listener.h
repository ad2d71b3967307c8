#pragma once
// UDP (-U PORT): memcached's text protocol (and binary, as memcached 1.6.18
// serves it) over datagrams.
//
// Every datagram starts with memcached's 8-byte frame header, four 16-bit
// big-endian numbers: request id, sequence number, total datagrams in the
// message, reserved (0). A request must fit one datagram (total 1): a
// datagram that says otherwise, or is no longer than its header, is dropped
// without a reply, as memcached drops it. The payload goes through a fresh
// protocol handler (TextHandler, or BinaryHandler when its first byte is a
// binary magic byte) with the same engine as TCP; a request left incomplete
// at the end of the datagram is dropped, so nothing carries over from one
// datagram to the next.
//
// The replies to one datagram are one message: split into datagrams of at
// most 1400 bytes (memcached's UDP_MAX_PAYLOAD_SIZE, header included), each
// with the request id, its sequence number 0..n-1 and the total n. A request
// with nothing to answer (noreply) gets no datagram.
//
// Each worker thread serves every UDP socket from its own epoll loop (the
// socket is registered with EPOLLEXCLUSIVE, so a datagram wakes one worker)
// and counts in its own OpStats.

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/output.h"
#include "protocol/services.h"

namespace memkeep::net {

inline constexpr size_t kUdpHeaderSize = 8;
inline constexpr size_t kUdpMaxDatagram = 1400;   // memcached's UDP_MAX_PAYLOAD_SIZE
inline constexpr size_t kUdpMaxPayload = kUdpMaxDatagram - kUdpHeaderSize;

struct UdpSocket {
    int fd = -1;
    std::string name;   // "udp:127.0.0.1:11211"
};

// Opens a non-blocking UDP socket bound to address:port, or returns fd -1
// with `error` set.
UdpSocket open_udp_socket(const std::string& address, int port, std::string* error);

// memcached's frame header.
struct UdpHeader {
    uint16_t request_id = 0;
    uint16_t sequence = 0;
    uint16_t total = 0;
    uint16_t reserved = 0;
};
// Reads the header at the start of `datagram`; false when it is too short.
bool parse_udp_header(std::string_view datagram, UdpHeader* header);
void write_udp_header(const UdpHeader& header, unsigned char* out);

// One UDP socket as one worker serves it. Does not own the socket.
class UdpEndpoint {
public:
    UdpEndpoint(int fd, protocol::HandlerContext context);

    int fd() const { return fd_; }

    // Reads and answers the datagrams waiting on the socket, at most
    // `max_datagrams` (the loop comes back while more wait: level-triggered).
    void on_readable(size_t max_datagrams);

    // Answers one datagram: the replies to its payload, framed, are passed
    // to `send` one datagram at a time. Public for tests and fuzzing.
    template <typename Send>
    void serve(std::string_view datagram, Send&& send);

private:
    // Runs the payload's requests; the replies are left in output_.
    bool run_requests(std::string_view datagram, UdpHeader* header);

    int fd_;
    protocol::HandlerContext context_;
    std::vector<char> buffer_;
    protocol::Output output_;
};

template <typename Send>
void UdpEndpoint::serve(std::string_view datagram, Send&& send) {
    UdpHeader header;
    if (!run_requests(datagram, &header)) return;
    size_t bytes = output_.pending_bytes();
    size_t total = (bytes + kUdpMaxPayload - 1) / kUdpMaxPayload;
    if (total > UINT16_MAX) {   // more than a 16-bit total can number: not sent
        output_.clear();
        return;
    }
    unsigned char packet[kUdpMaxDatagram];
    iovec iov[64];
    for (size_t sequence = 0; sequence < total; ++sequence) {
        UdpHeader out{header.request_id, static_cast<uint16_t>(sequence), static_cast<uint16_t>(total), 0};
        write_udp_header(out, packet);
        // Copies at most 1392 bytes of replies (values included) into the packet.
        size_t filled = 0;
        size_t want = std::min(kUdpMaxPayload, output_.pending_bytes());
        while (filled < want) {
            int count = output_.gather(iov, 64);
            size_t copied = 0;
            for (int i = 0; i < count && filled + copied < want; ++i) {
                size_t n = std::min(iov[i].iov_len, want - filled - copied);
                std::memcpy(packet + kUdpHeaderSize + filled + copied, iov[i].iov_base, n);
                copied += n;
            }
            output_.consume(copied);
            filled += copied;
        }
        send(std::string_view(reinterpret_cast<const char*>(packet), kUdpHeaderSize + filled));
    }
    output_.clear();
}

}  // namespace memkeep::net
