#pragma once
// Claiming a data directory for a store or tier: checks that it can be used,
// and takes a lock on it so that a second process is refused.

#include <filesystem>
#include <string>

namespace memkeep::storage {

namespace fs = std::filesystem;

// The name of the marker file whose first line says what wrote the directory.
inline constexpr const char* kDataDirMarker = "MEMKEEP_DATA";

// Creates `dir` if missing and locks it (flock on memkeep.lock). A directory
// with files must carry the marker with exactly `format`; an empty one gets
// the marker (`*fresh` = true). Returns the lock's fd (held for the life of
// the store; closing it releases the lock), or -1 with `error` set and no file
// changed when the path is not a directory, is not writable, holds foreign
// files or another format, or is locked by another process.
int claim_data_dir(const fs::path& dir, const std::string& format, bool* fresh, std::string* error);

}  // namespace memkeep::storage
