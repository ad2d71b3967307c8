#pragma once
// Standard base64 (RFC 4648, with padding), for meta commands' binary keys.

#include <cstddef>
#include <string>
#include <string_view>

namespace memkeep::protocol {

// Decodes `text` into `out` (capacity `capacity`); returns the decoded length,
// or -1 if `text` is not valid padded base64 or does not fit.
long base64_decode(std::string_view text, char* out, size_t capacity);
void base64_encode(std::string_view bytes, std::string* out);

}  // namespace memkeep::protocol
