#pragma once
// Reading numbers from command tokens exactly as memcached does (its
// safe_strtoul / safe_strtol / safe_strtoull): strtoul-style parsing, a
// trailing non-digit is an error, a minus sign is rejected for unsigned
// values. Matching these quirks keeps replies to odd input identical.

#include <cstdint>
#include <string_view>

namespace memkeep::protocol {

// Unsigned 64-bit (CAS values, incr/decr deltas).
bool parse_u64(std::string_view token, uint64_t* out);
// Client flags: read as an unsigned long and truncated to 32 bits, as memcached does.
bool parse_flags(std::string_view token, uint32_t* out);
// Signed 32-bit (exptimes, value lengths); larger values wrap, as memcached's.
bool parse_i32(std::string_view token, int32_t* out);
// Signed 64-bit, for tokens where memcached keeps a long.
bool parse_i64(std::string_view token, int64_t* out);

}  // namespace memkeep::protocol
