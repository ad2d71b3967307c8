#include "storage/data_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace memkeep::storage {

namespace {
constexpr const char* kLockFile = "memkeep.lock";
// The marker is written here first, then renamed over kDataDirMarker.
constexpr const char* kMarkerTemp = "MEMKEEP_DATA.tmp";

std::string errno_text() { return std::strerror(errno); }

// True when `dir` holds nothing but the files claim_data_dir itself makes
// (the lock, and a marker temp file left by a crash during a first start).
bool holds_only_our_scaffolding(const fs::path& dir) {
    for (const auto& entry : fs::directory_iterator(dir)) {
        std::string name = entry.path().filename().string();
        if (name != kLockFile && name != kMarkerTemp) return false;
    }
    return true;
}

// Reads the marker's first line without following a symlink; false when the
// marker is missing, a symlink, or unreadable.
bool read_marker(const fs::path& dir, std::string* line) {
    int fd = ::open((dir / kDataDirMarker).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return false;
    char buffer[256];
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    ::close(fd);
    if (n <= 0) return false;
    std::string text(buffer, static_cast<size_t>(n));
    size_t newline = text.find('\n');
    if (newline == std::string::npos) return false;
    *line = text.substr(0, newline);
    return true;
}

// Writes the marker atomically: a crash leaves either no marker or a whole one.
bool write_marker(const fs::path& dir, const std::string& format, std::string* error) {
    fs::path temp = dir / kMarkerTemp;
    ::unlink(temp.c_str());
    int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        *error = "cannot create " + temp.string() + ": " + errno_text();
        return false;
    }
    std::string text = format + "\n";
    bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!written || ::rename(temp.c_str(), (dir / kDataDirMarker).c_str()) != 0) {
        *error = "cannot write " + (dir / kDataDirMarker).string() + ": " + errno_text();
        ::unlink(temp.c_str());
        return false;
    }
    int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
        ::fsync(dir_fd);  // the rename itself must survive a power loss
        ::close(dir_fd);
    }
    return true;
}

bool change_owner_under(const fs::path& dir, uid_t uid, gid_t gid, std::string* error) {
    std::error_code ec;
    // directory_iterator does not follow symlinks into other trees unless told.
    for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
        if (::lchown(it->path().c_str(), uid, gid) != 0) {
            *error = "cannot give " + it->path().string() + " to the -u user: " + errno_text();
            return false;
        }
    }
    if (ec) {
        *error = "cannot read data dir " + dir.string() + ": " + ec.message();
        return false;
    }
    return true;
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
        *error = "data dir " + dir.string() + " is not writable: " + errno_text();
        return -1;
    }
    // The lock comes first: the emptiness check and the marker below are
    // then done by one process at a time. A lock file we made is removed
    // again when we refuse, so that a refused directory is left unchanged.
    fs::path lock_path = dir / kLockFile;
    bool made_lock = true;
    int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EEXIST) {
        made_lock = false;
        fd = ::open(lock_path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
        *error = "cannot open the lock file " + lock_path.string() + ": " + errno_text();
        return -1;
    }
    auto refuse = [&](const std::string& message) {
        *error = message;
        if (made_lock) ::unlink(lock_path.c_str());
        ::close(fd);
        return -1;
    };
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        made_lock = false;   // the other process's lock file
        return refuse("data dir " + dir.string() + " is in use by another memkeep process");
    }
    *fresh = holds_only_our_scaffolding(dir);
    if (!*fresh) {
        std::string line;
        if (!read_marker(dir, &line)) {
            return refuse("data dir " + dir.string() + " holds files that are not a memkeep store (no " +
                          kDataDirMarker + "); refusing to use it");
        }
        if (line != format) {
            return refuse("data dir " + dir.string() + " was written by an incompatible version (\"" + line +
                          "\", this is \"" + format + "\"); refusing to use it");
        }
        ::unlink((dir / kMarkerTemp).c_str());
    } else {
        std::string write_error;
        if (!write_marker(dir, format, &write_error)) return refuse(write_error);
    }
    return fd;
}

bool give_data_dir_to(const fs::path& dir, uid_t uid, gid_t gid, std::string* error) {
    struct stat info {};
    if (::stat(dir.c_str(), &info) != 0) {   // a symlinked data dir is the operator's choice
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec || ::chmod(dir.c_str(), 0750) != 0) {
            *error = "cannot create data dir " + dir.string() + ": " + (ec ? ec.message() : errno_text());
            return false;
        }
    } else if (!S_ISDIR(info.st_mode)) {
        return true;   // claim_data_dir says why it cannot be used
    }
    std::error_code ec;
    bool ours = fs::is_empty(dir, ec) || fs::exists(dir / kDataDirMarker, ec);
    if (!ours) return true;   // foreign files: claim_data_dir refuses them
    if (::chown(dir.c_str(), uid, gid) != 0) {
        *error = "cannot give data dir " + dir.string() + " to the -u user: " + errno_text();
        return false;
    }
    return change_owner_under(dir, uid, gid, error);
}

}  // namespace memkeep::storage
