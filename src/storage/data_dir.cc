#include "storage/data_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace memkeep::storage {

namespace {
constexpr const char* kLockFile = "memkeep.lock";

bool directory_is_empty(const fs::path& path) {
    return fs::directory_iterator(path) == fs::directory_iterator();
}
}  // namespace

int claim_data_dir(const fs::path& dir, const std::string& format, bool* fresh, std::string* error) {
    std::error_code ec;
    if (fs::exists(dir, ec)) {
        if (!fs::is_directory(dir, ec)) {
            *error = "data dir " + dir.string() + " exists and is not a directory";
            return -1;
        }
    } else if (!fs::create_directories(dir, ec)) {
        *error = "cannot create data dir " + dir.string() + ": " + ec.message();
        return -1;
    }
    if (::access(dir.c_str(), R_OK | W_OK | X_OK) != 0) {
        *error = "data dir " + dir.string() + " is not writable: " + std::strerror(errno);
        return -1;
    }
    fs::path marker = dir / kDataDirMarker;
    *fresh = directory_is_empty(dir);
    if (!*fresh) {
        std::ifstream in(marker);
        std::string line;
        if (!in || !std::getline(in, line)) {
            *error = "data dir " + dir.string() + " holds files that are not a memkeep store (no " +
                     kDataDirMarker + "); refusing to use it";
            return -1;
        }
        if (line != format) {
            *error = "data dir " + dir.string() + " was written by an incompatible version (\"" + line +
                     "\", this is \"" + format + "\"); refusing to use it";
            return -1;
        }
    }
    int fd = ::open((dir / kLockFile).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        *error = "cannot open the lock file in " + dir.string() + ": " + std::strerror(errno);
        return -1;
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        *error = "data dir " + dir.string() + " is in use by another memkeep process";
        ::close(fd);
        return -1;
    }
    if (*fresh) {
        std::ofstream out(marker);
        out << format << "\n";
        if (!out) {
            *error = "cannot write " + marker.string();
            ::close(fd);
            return -1;
        }
    }
    return fd;
}

}  // namespace memkeep::storage
