#include "server/process_setup.h"

#include <grp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>

namespace memkeep::server {

namespace {
void make_absolute(std::string* path) {
    if (path->empty() || (*path)[0] == '/') return;
    std::error_code ec;
    std::filesystem::path absolute = std::filesystem::absolute(*path, ec);
    if (!ec) *path = absolute.lexically_normal().string();
}
}  // namespace

void make_paths_absolute(Config* config) {
    make_absolute(&config->data_dir);
    make_absolute(&config->pidfile);
    make_absolute(&config->tls_cert);
    make_absolute(&config->tls_key);
    make_absolute(&config->tls_ca);
    make_absolute(&config->auth_file);
    make_absolute(&config->unix_socket);
}

int open_file_headroom(const Config& config) {
    // 32: standard streams, the TCP/UDP/replication listeners, the main
    // loop's epoll, signalfd and wake-up eventfd, replication links. Each
    // worker holds an epoll fd and an eventfd. RocksDB keeps the files of
    // its store open (max_open_files is unlimited): 256 covers the tables
    // of a store of a few GB and the overflow tier.
    int headroom = 32 + 2 * config.threads;
    if (config.storage != "memory") headroom += 256;
    return headroom;
}

bool raise_open_file_limit(const Config& config, std::string* error) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        *error = "failed to getrlimit number of files";
        return false;
    }
    rlim_t needed = static_cast<rlim_t>(config.conn_limit) + static_cast<rlim_t>(open_file_headroom(config));
    if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur >= needed) return true;
    if (limit.rlim_cur == RLIM_INFINITY) return true;
    rlimit raised = limit;
    raised.rlim_cur = needed;
    if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < needed) raised.rlim_max = needed;
    if (::setrlimit(RLIMIT_NOFILE, &raised) != 0) {
        *error = "failed to set rlimit for open files to " + std::to_string(needed) + " (-c " +
                 std::to_string(config.conn_limit) + " plus " + std::to_string(open_file_headroom(config)) +
                 " for listeners, threads and the store; the hard limit is " + std::to_string(limit.rlim_max) +
                 "). Try starting as root or requesting a smaller -c value.";
        return false;
    }
    return true;
}

bool find_target_user(const Config& config, TargetUser* user, std::string* error) {
    if (::getuid() != 0 && ::geteuid() != 0) return true;  // nothing to drop
    if (config.user.empty()) return true;                  // warned about by main
    passwd* entry = ::getpwnam(config.user.c_str());
    if (!entry) {
        *error = "can't find the user " + config.user + " to switch to";
        return false;
    }
    user->switch_needed = entry->pw_uid != 0;
    user->uid = entry->pw_uid;
    user->gid = entry->pw_gid;
    return true;
}

bool switch_to_user(const Config& config, const TargetUser& user, std::string* error) {
    if (!user.switch_needed) return true;
    if (::setgroups(0, nullptr) != 0 || ::setgid(user.gid) != 0 || ::setuid(user.uid) != 0) {
        *error = "failed to assume the identity of " + config.user;
        return false;
    }
    return true;
}

}  // namespace memkeep::server
