#pragma once
// Listening sockets: TCP (IPv4 or IPv6) and UNIX stream sockets.

#include <string>

namespace memkeep::net {

struct ListenSocket {
    int fd = -1;
    std::string name;   // "tcp:127.0.0.1:11211" or "unix:/path", for logs and stats
};

// Opens a non-blocking listening socket, or returns fd -1 with `error` set.
ListenSocket open_tcp_listener(const std::string& address, int port, int backlog, std::string* error);
ListenSocket open_unix_listener(const std::string& path, unsigned mask, int backlog, std::string* error);

// Accepts one connection as a non-blocking socket (-1 when none is waiting);
// `peer` is set to a printable address.
int accept_connection(const ListenSocket& listener, std::string* peer);

}  // namespace memkeep::net
