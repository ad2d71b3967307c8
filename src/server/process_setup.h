#pragma once
// What the process sets up around the server before it serves, as memcached
// does in its main(): absolute paths before daemonizing, the open-file limit
// sized for -c, and the switch from root to the -u user.
//
// Called only by main(), on the main thread, before any other thread exists
// (except switch_to_user, which runs before the store starts its threads).

#include <sys/types.h>

#include <string>

#include "server/config.h"

namespace memkeep::server {

// Exit codes of memcached's main() (sysexits.h) for the same refusals.
inline constexpr int kExitUsage = 64;     // EX_USAGE
inline constexpr int kExitNoUser = 67;    // EX_NOUSER
inline constexpr int kExitOsError = 71;   // EX_OSERR

// Rewrites every file path of `config` (--data-dir, -P, --tls-*, -Y, -s)
// to an absolute one, so that -d's chdir("/") does not change what they
// name. (--repl-secret-file is read while the flags are parsed.)
void make_paths_absolute(Config* config);

// File descriptors the server needs beyond its connections: standard
// streams, listeners, each worker's epoll and wake-up fds, replication links
// and, with a store, the files RocksDB keeps open.
int open_file_headroom(const Config& config);

// Raises RLIMIT_NOFILE to -c plus the headroom when it is lower (never
// lowers it). False with `error` set when the limit cannot be raised that
// far (memcached 1.6.18 refuses to start then too, with exit code 71).
bool raise_open_file_limit(const Config& config, std::string* error);

// The -u user as root: resolved before anything starts, so that an unknown
// name fails the start with memcached's message.
struct TargetUser {
    bool switch_needed = false;   // started as root with -u
    uid_t uid = 0;
    gid_t gid = 0;
};
bool find_target_user(const Config& config, TargetUser* user, std::string* error);

// setgroups/setgid/setuid to `user`; false with `error` set when one fails.
bool switch_to_user(const Config& config, const TargetUser& user, std::string* error);

}  // namespace memkeep::server
