#pragma once
// Logging to stderr, one line per call. -v enables info lines, -vv also one
// line per request (as memcached's "<fd command" lines).

#include <string_view>

namespace memkeep::server {

void log_line(std::string_view line);

}  // namespace memkeep::server
