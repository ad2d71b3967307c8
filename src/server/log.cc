#include "server/log.h"

#include <cstdio>
#include <mutex>

namespace memkeep::server {

void log_line(std::string_view line) {
    static std::mutex mutex;
    std::lock_guard<std::mutex> guard(mutex);
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fputc('\n', stderr);
    std::fflush(stderr);
}

}  // namespace memkeep::server
