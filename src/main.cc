// memkeep: a memcached-compatible server. Flags -> Config -> Server::run.

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "server/config.h"
#include "server/process_setup.h"
#include "server/server.h"
#include "storage/data_dir.h"

namespace {

// With -d the work happens in a detached child; it reports to the parent
// through this pipe ("" = ready, else the error), so a data dir or port
// that cannot be used still gives the person who started us a message and
// a non-zero exit.
int report_fd = -1;

int fail(const std::string& message, int code = 1) {
    std::fprintf(stderr, "memkeep: %s\n", message.c_str());
    if (report_fd >= 0) {
        [[maybe_unused]] ssize_t n = ::write(report_fd, message.data(), message.size());
        ::close(report_fd);
    }
    return code;
}

// Detaches from the terminal the way memcached's -d does. Returns only in
// the child; the parent exits with the child's startup result.
bool daemonize() {
    int pipe_fds[2];
    if (::pipe(pipe_fds) != 0) return false;
    pid_t pid = ::fork();
    if (pid < 0) return false;
    if (pid > 0) {
        ::close(pipe_fds[1]);
        std::string message;
        char buffer[512];
        ssize_t n;
        while ((n = ::read(pipe_fds[0], buffer, sizeof(buffer))) > 0) message.append(buffer, static_cast<size_t>(n));
        // The child closes the pipe once it serves (success) or after writing its error.
        ::_exit(message.empty() ? 0 : 1);
    }
    ::close(pipe_fds[0]);
    report_fd = pipe_fds[1];
    if (::setsid() < 0) return false;
    if (::chdir("/") != 0) return false;
    return true;
}

void detach_stdio() {
    int null_fd = ::open("/dev/null", O_RDWR);
    if (null_fd < 0) return;
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(null_fd, STDOUT_FILENO);
    ::dup2(null_fd, STDERR_FILENO);
    if (null_fd > STDERR_FILENO) ::close(null_fd);
}

}  // namespace

int main(int argc, char** argv) {
    memkeep::server::Config config;
    switch (memkeep::server::parse_config(argc, argv, &config)) {
        case memkeep::server::ParseOutcome::kExitSuccess: return 0;
        case memkeep::server::ParseOutcome::kExitFailure: return 64;  // EX_USAGE, as memcached
        case memkeep::server::ParseOutcome::kRun: break;
    }
    // As memcached 1.6: SIGPIPE ignored (a closed peer is an EPIPE), SIGUSR1
    // a graceful stop (taken by the server's signalfd below), SIGUSR2 left
    // at its default.
    ::signal(SIGPIPE, SIG_IGN);
    // Paths are made absolute before -d's chdir("/") can change what they name.
    memkeep::server::make_paths_absolute(&config);
    std::string error;
    if (!memkeep::server::raise_open_file_limit(config, &error)) return fail(error, memkeep::server::kExitOsError);
    memkeep::server::TargetUser user;
    if (!memkeep::server::find_target_user(config, &user, &error)) return fail(error, memkeep::server::kExitNoUser);
    // Daemonize before any thread exists (the store starts threads).
    if (config.daemonize && !daemonize()) return fail("failed to daemonize");
    // SIGTERM/SIGINT/SIGUSR1 are taken by the server's signalfd; block them
    // before any thread starts so that every thread inherits the mask.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGUSR1);  // graceful stop, as memcached
    sigaddset(&stop_signals, SIGHUP);   // -Y reload, also taken by the signalfd
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    memkeep::server::Server server(config);
    // As root: the client ports (which may be privileged), the TLS key, the
    // auth file and the pid file. Then the data dir is given to the -u user
    // and root is dropped before the store opens, so that every file the
    // store, the overflow tier and `backup` create belongs to that user.
    if (!server.load_auth_file(&error)) return fail(error);
    if (!server.open_listeners(&error)) return fail(error);
    if (!config.pidfile.empty()) {
        std::ofstream pidfile(config.pidfile);
        if (!pidfile) return fail("could not open the pid file " + config.pidfile);
        pidfile << ::getpid() << "\n";
    }
    if (user.switch_needed && config.storage != "memory" &&
        !memkeep::storage::give_data_dir_to(config.data_dir, user.uid, user.gid, &error)) {
        return fail(error);
    }
    if (!memkeep::server::switch_to_user(config, user, &error)) return fail(error, memkeep::server::kExitOsError);
    if (!server.open_storage(&error)) return fail(error);
    if (!server.open_replication_listener(&error)) return fail(error);
    if (!server.start_listening(&error)) return fail(error);
    if ((::getuid() == 0 || ::geteuid() == 0) && config.user.empty()) {
        // memcached refuses to run as root without -u; memkeep warns, once
        // it has started, so that a refusal stays one line
        // (docs/OPERATIONS.md "Security").
        std::fprintf(stderr, "memkeep: warning: running as root without -u; "
                             "use -u USER to drop root once the ports are open\n");
    }
    if (report_fd >= 0) {
        detach_stdio();
        ::close(report_fd);  // ready: the parent exits 0
        report_fd = -1;
    }
    int code = server.run();
    if (!config.pidfile.empty()) ::unlink(config.pidfile.c_str());
    return code;
}
