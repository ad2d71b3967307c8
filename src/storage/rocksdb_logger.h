#pragma once
// RocksDB's warnings go to our stderr instead of LOG files in the data dir,
// so that refusing to open a directory leaves every file in it as it was.
// Included only by the .cc files that use RocksDB.

#include <rocksdb/env.h>

#include <cstdarg>
#include <cstdio>

namespace memkeep::storage {

class StderrLogger : public rocksdb::Logger {
public:
    explicit StderrLogger(rocksdb::InfoLogLevel level = rocksdb::InfoLogLevel::WARN_LEVEL)
        : rocksdb::Logger(level) {}
    using rocksdb::Logger::Logv;
    void Logv(const char* format, va_list ap) override {
        std::fputs("memkeep: rocksdb: ", stderr);
        std::vfprintf(stderr, format, ap);
        std::fputc('\n', stderr);
    }
};

}  // namespace memkeep::storage
