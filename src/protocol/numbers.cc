#include "protocol/numbers.h"

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

namespace memkeep::protocol {

namespace {
// Copies a token into a NUL-terminated buffer; false if it cannot be a number.
bool terminated(std::string_view token, char (&buffer)[64]) {
    if (token.empty() || token.size() >= sizeof(buffer)) return false;
    std::memcpy(buffer, token.data(), token.size());
    buffer[token.size()] = '\0';
    return true;
}

// Up to 18 plain digits (the common case) cannot overflow and read the same
// with or without strtoul: take the fast way.
bool plain_digits(std::string_view token, uint64_t* out) {
    if (token.empty() || token.size() > 18) return false;
    uint64_t value = 0;
    for (char c : token) {
        if (c < '0' || c > '9') return false;
        value = value * 10 + static_cast<uint64_t>(c - '0');
    }
    *out = value;
    return true;
}

bool ends_cleanly(const char* start, const char* end) {
    return std::isspace(static_cast<unsigned char>(*end)) || (*end == '\0' && end != start);
}
}  // namespace

bool parse_u64(std::string_view token, uint64_t* out) {
    if (plain_digits(token, out)) return true;
    char text[64];
    if (!terminated(token, text)) return false;
    errno = 0;
    char* end = nullptr;
    unsigned long long value = std::strtoull(text, &end, 10);
    if (errno == ERANGE || end == text || !ends_cleanly(text, end)) return false;
    if (static_cast<long long>(value) < 0 && std::strchr(text, '-')) return false;
    *out = value;
    return true;
}

bool parse_flags(std::string_view token, uint32_t* out) {
    // strtoul and strtoull read the same 64 bits here; memcached keeps 32.
    uint64_t value = 0;
    if (!parse_u64(token, &value)) return false;
    *out = static_cast<uint32_t>(value);
    return true;
}

bool parse_i64(std::string_view token, int64_t* out) {
    uint64_t plain = 0;
    if (plain_digits(token, &plain)) {
        *out = static_cast<int64_t>(plain);
        return true;
    }
    char text[64];
    if (!terminated(token, text)) return false;
    errno = 0;
    char* end = nullptr;
    long value = std::strtol(text, &end, 10);
    if (errno == ERANGE || end == text || !ends_cleanly(text, end)) return false;
    *out = value;
    return true;
}

bool parse_i32(std::string_view token, int32_t* out) {
    int64_t value = 0;
    if (!parse_i64(token, &value)) return false;
    // memcached stores the long into an int32_t: larger values wrap.
    *out = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(value)));
    return true;
}

}  // namespace memkeep::protocol
