// memkeep: a memcached-compatible server. Flags -> Config -> Server::run.

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "server/config.h"
#include "server/server.h"

namespace {

int fail(const std::string& message) {
    std::fprintf(stderr, "memkeep: %s\n", message.c_str());
    return 1;
}

// Detaches from the terminal the way memcached's -d does.
bool daemonize() {
    pid_t pid = ::fork();
    if (pid < 0) return false;
    if (pid > 0) ::_exit(0);
    if (::setsid() < 0) return false;
    if (::chdir("/") != 0) return false;
    int null_fd = ::open("/dev/null", O_RDWR);
    if (null_fd >= 0) {
        ::dup2(null_fd, STDIN_FILENO);
        ::dup2(null_fd, STDOUT_FILENO);
        ::dup2(null_fd, STDERR_FILENO);
        if (null_fd > STDERR_FILENO) ::close(null_fd);
    }
    return true;
}

bool drop_privileges(const std::string& user, std::string* error) {
    if (::getuid() != 0 && ::geteuid() != 0) return true;  // nothing to drop
    if (user.empty()) return true;
    passwd* entry = ::getpwnam(user.c_str());
    if (!entry) {
        *error = "can't find the user " + user + " to switch to";
        return false;
    }
    if (::setgroups(0, nullptr) != 0 || ::setgid(entry->pw_gid) != 0 || ::setuid(entry->pw_uid) != 0) {
        *error = "failed to assume the identity of " + user;
        return false;
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    memkeep::server::Config config;
    switch (memkeep::server::parse_config(argc, argv, &config)) {
        case memkeep::server::ParseOutcome::kExitSuccess: return 0;
        case memkeep::server::ParseOutcome::kExitFailure: return 64;  // EX_USAGE, as memcached
        case memkeep::server::ParseOutcome::kRun: break;
    }
    ::signal(SIGPIPE, SIG_IGN);

    memkeep::server::Server server(config);
    std::string error;
    if (!server.open_listeners(&error)) return fail(error);
    if (config.daemonize && !daemonize()) return fail("failed to daemonize");
    if (!config.pidfile.empty()) {
        std::ofstream pidfile(config.pidfile);
        if (!pidfile) return fail("could not open the pid file " + config.pidfile);
        pidfile << ::getpid() << "\n";
    }
    if (!drop_privileges(config.user, &error)) return fail(error);
    int code = server.run();
    if (!config.pidfile.empty()) ::unlink(config.pidfile.c_str());
    return code;
}
