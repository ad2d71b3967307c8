#pragma once
// Listening sockets: TCP (IPv4 or IPv6) and UNIX stream sockets.

#include <string>

namespace memkeep::net {

struct ListenSocket {
    int fd = -1;
    std::string name;   // "tcp:127.0.0.1:11211" or "unix:/path", for logs and stats
};

// A non-blocking socket of `type` (SOCK_STREAM or SOCK_DGRAM) bound to
// address:port (an IPv4 or IPv6 literal or name; "[::1]" allowed), or -1 with
// `error` set. `name` receives "<scheme>:host:port" ("<scheme>6:[host]:port"
// for IPv6) of the bound address, e.g. "tcp:127.0.0.1:11211".
int bind_socket(const std::string& address, int port, int type, const char* scheme, std::string* name,
                std::string* error);

// Opens a non-blocking listening socket, or returns fd -1 with `error` set.
ListenSocket open_tcp_listener(const std::string& address, int port, int backlog, std::string* error);
ListenSocket open_unix_listener(const std::string& path, unsigned mask, int backlog, std::string* error);

// The same in two steps: bind (as root, for a privileged port) now, listen
// once the server is ready to serve, so that a client that can connect
// finds the store open and every other listener up.
ListenSocket bind_tcp_listener(const std::string& address, int port, std::string* error);
ListenSocket bind_unix_listener(const std::string& path, unsigned mask, std::string* error);
bool start_listening(const ListenSocket& listener, int backlog, std::string* error);

// Accepts one connection as a non-blocking socket (-1 when none is waiting);
// `peer` is set to a printable address.
int accept_connection(const ListenSocket& listener, std::string* peer);

}  // namespace memkeep::net
