#include "net/listener.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace memkeep::net {

namespace {

std::string describe(const sockaddr* address, const char* scheme) {
    char host[INET6_ADDRSTRLEN] = "?";
    if (address->sa_family == AF_INET) {
        auto* in = reinterpret_cast<const sockaddr_in*>(address);
        ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        return std::string(scheme) + ":" + host + ":" + std::to_string(ntohs(in->sin_port));
    }
    if (address->sa_family == AF_INET6) {
        auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
        ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        return std::string(scheme) + "6:[" + host + "]:" + std::to_string(ntohs(in6->sin6_port));
    }
    return "unix:";
}

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

}  // namespace

int bind_socket(const std::string& address, int port, int type, const char* scheme, std::string* name,
                std::string* error) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = type;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    std::string host = address;
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    addrinfo* found = nullptr;
    int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
    if (rc != 0) {
        *error = "cannot resolve listen address " + address + ": " + ::gai_strerror(rc);
        return -1;
    }
    int fd = ::socket(found->ai_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *error = errno_text("socket");
        ::freeaddrinfo(found);
        return -1;
    }
    if (type == SOCK_STREAM) {
        int one = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    }
    if (::bind(fd, found->ai_addr, found->ai_addrlen) != 0) {
        *error = errno_text(std::string("failed to listen on ") + (type == SOCK_DGRAM ? "UDP " : "") + address + ":" +
                            std::to_string(port));
        ::close(fd);
        ::freeaddrinfo(found);
        return -1;
    }
    ::freeaddrinfo(found);
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length);
    *name = describe(reinterpret_cast<sockaddr*>(&bound), scheme);
    return fd;
}

ListenSocket bind_tcp_listener(const std::string& address, int port, std::string* error) {
    ListenSocket result;
    std::string name;
    int fd = bind_socket(address, port, SOCK_STREAM, "tcp", &name, error);
    if (fd < 0) return result;
    result.fd = fd;
    result.name = name;
    return result;
}

ListenSocket bind_unix_listener(const std::string& path, unsigned mask, std::string* error) {
    ListenSocket result;
    sockaddr_un address{};
    if (path.size() >= sizeof(address.sun_path)) {
        *error = "unix socket path too long: " + path;
        return result;
    }
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *error = errno_text("socket");
        return result;
    }
    // A socket file left by a previous run would make bind fail, as memcached
    // we remove it; anything else at that path is an error.
    struct stat existing {};
    if (::lstat(path.c_str(), &existing) == 0 && S_ISSOCK(existing.st_mode)) ::unlink(path.c_str());
    mode_t old_mask = ::umask(~mask & 0777);
    int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    ::umask(old_mask);
    if (rc != 0) {
        *error = errno_text("failed to listen on unix socket " + path);
        ::close(fd);
        return result;
    }
    result.fd = fd;
    result.name = "unix:" + path;
    return result;
}

bool start_listening(const ListenSocket& listener, int backlog, std::string* error) {
    if (::listen(listener.fd, backlog) == 0) return true;
    *error = errno_text("failed to listen on " + listener.name);
    return false;
}

ListenSocket open_tcp_listener(const std::string& address, int port, int backlog, std::string* error) {
    ListenSocket result = bind_tcp_listener(address, port, error);
    if (result.fd >= 0 && !start_listening(result, backlog, error)) {
        ::close(result.fd);
        return ListenSocket{};
    }
    return result;
}

ListenSocket open_unix_listener(const std::string& path, unsigned mask, int backlog, std::string* error) {
    ListenSocket result = bind_unix_listener(path, mask, error);
    if (result.fd >= 0 && !start_listening(result, backlog, error)) {
        ::close(result.fd);
        return ListenSocket{};
    }
    return result;
}

int accept_connection(const ListenSocket& listener, std::string* peer) {
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    int fd = ::accept4(listener.fd, reinterpret_cast<sockaddr*>(&address), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return -1;
    if (address.ss_family == AF_INET || address.ss_family == AF_INET6) {
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        *peer = describe(reinterpret_cast<sockaddr*>(&address), "tcp");
    } else {
        *peer = listener.name;
    }
    return fd;
}

}  // namespace memkeep::net
