#include "net/udp_listener.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <memory>

#include "net/listener.h"
#include "protocol/handler.h"

namespace memkeep::net {

namespace {
// The largest UDP payload IPv4 can carry; a request must fit one datagram.
constexpr size_t kMaxDatagram = 65536;
// How long a reply waits for room in the socket's send buffer before the
// rest of it is dropped (UDP makes no promise of delivery).
constexpr int kSendWaitMs = 100;

}  // namespace

UdpSocket open_udp_socket(const std::string& address, int port, std::string* error) {
    UdpSocket result;
    std::string name;
    int fd = bind_socket(address, port, SOCK_DGRAM, "udp", &name, error);
    if (fd < 0) return result;
    result.fd = fd;
    result.name = name;
    return result;
}

bool parse_udp_header(std::string_view datagram, UdpHeader* header) {
    if (datagram.size() < kUdpHeaderSize) return false;
    auto word = [&](size_t at) {
        return static_cast<uint16_t>((static_cast<unsigned char>(datagram[at]) << 8) |
                                     static_cast<unsigned char>(datagram[at + 1]));
    };
    header->request_id = word(0);
    header->sequence = word(2);
    header->total = word(4);
    header->reserved = word(6);
    return true;
}

void write_udp_header(const UdpHeader& header, unsigned char* out) {
    const uint16_t words[4] = {header.request_id, header.sequence, header.total, header.reserved};
    for (int i = 0; i < 4; ++i) {
        out[2 * i] = static_cast<unsigned char>(words[i] >> 8);
        out[2 * i + 1] = static_cast<unsigned char>(words[i] & 0xff);
    }
}

UdpEndpoint::UdpEndpoint(int fd, protocol::HandlerContext context)
    : fd_(fd), context_(context), buffer_(kMaxDatagram) {}

bool UdpEndpoint::run_requests(std::string_view datagram, UdpHeader* header) {
    // As memcached: a datagram must carry more than its header, and a
    // request spanning several datagrams is not supported (dropped).
    if (datagram.size() <= kUdpHeaderSize || !parse_udp_header(datagram, header)) return false;
    if (header->total != 1) return false;
    std::string_view payload = datagram.substr(kUdpHeaderSize);
    // As memcached 1.6.18 over UDP: each datagram's first byte picks the
    // protocol, whatever -B says. A fresh handler per datagram: a request
    // cut off at the end of one is dropped, not continued by the next.
    auto handler = protocol::make_handler(protocol::ProtocolChoice::kAuto,
                                          static_cast<unsigned char>(payload[0]), context_);
    handler->process(payload, output_, SIZE_MAX, SIZE_MAX);
    // Durable mode: the writes must be in the store before the reply leaves,
    // and the reply of a write that failed becomes an error.
    context_.engine.wait_durable(context_.stats);
    protocol::settle_held_replies(output_, context_.engine, *handler);
    return true;
}

void UdpEndpoint::on_readable(size_t max_datagrams) {
    for (size_t i = 0; i < max_datagrams; ++i) {
        sockaddr_storage from{};
        socklen_t from_length = sizeof(from);
        ssize_t n = ::recvfrom(fd_, buffer_.data(), buffer_.size(), MSG_DONTWAIT,
                               reinterpret_cast<sockaddr*>(&from), &from_length);
        if (n < 0) {
            if (errno == EINTR) continue;
            return;  // EAGAIN: drained (another worker may have taken it)
        }
        context_.stats.bytes_read.add(static_cast<uint64_t>(n));
        bool dropping = false;
        serve(std::string_view(buffer_.data(), static_cast<size_t>(n)), [&](std::string_view packet) {
            if (dropping) return;
            for (int attempt = 0; attempt < 2; ++attempt) {
                ssize_t sent = ::sendto(fd_, packet.data(), packet.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                                        reinterpret_cast<sockaddr*>(&from), from_length);
                if (sent >= 0) {
                    context_.stats.bytes_written.add(static_cast<uint64_t>(sent));
                    return;
                }
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) break;
                pollfd waiter{fd_, POLLOUT, 0};
                ::poll(&waiter, 1, kSendWaitMs);
            }
            dropping = true;  // the rest of this reply is lost, as a lost datagram would be
        });
    }
}

}  // namespace memkeep::net
