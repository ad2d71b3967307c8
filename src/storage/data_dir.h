#pragma once
// Claiming a data directory for a store or tier: checks that it can be used,
// and takes a lock on it so that a second process is refused.
//
// Called by the main thread at start, before any worker runs.

#include <sys/types.h>

#include <filesystem>
#include <string>

namespace memkeep::storage {

namespace fs = std::filesystem;

// The name of the marker file whose first line says what wrote the directory.
inline constexpr const char* kDataDirMarker = "MEMKEEP_DATA";

// Creates `dir` if missing and locks it (flock on memkeep.lock, opened with
// O_NOFOLLOW, taken before the directory is examined so that two processes
// cannot both find it empty). A directory with files must carry the marker
// with exactly `format`; an empty one gets the marker (`*fresh` = true),
// written to a temporary file, synced and renamed into place, never through
// a symlink. Returns the lock's fd (held for the life of the store; closing
// it releases the lock), or -1 with `error` set and no file changed when the
// path is not a directory, is not writable, holds foreign files or another
// format, or is locked by another process.
int claim_data_dir(const fs::path& dir, const std::string& format, bool* fresh, std::string* error);

// -u as root: makes `dir` (created if missing, mode 0750) and everything
// under it owned by uid:gid, so that the store the server opens after
// dropping root can create its next files there. Only a directory that is
// empty or carries the marker is changed (symlinks are not followed); a
// directory of foreign files is left as it is for claim_data_dir to refuse.
// False with `error` set (one line) when the directory cannot be created or
// changed.
bool give_data_dir_to(const fs::path& dir, uid_t uid, gid_t gid, std::string* error);

}  // namespace memkeep::storage
