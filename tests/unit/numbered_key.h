#pragma once
// numbered_key("k", 7) == "k7": the keys unit tests make by the thousand.
// Built by appending: GCC 12 at -O3 reports a false -Wrestrict overlap in
// `"k" + std::to_string(i)` (operator+ inserts the literal at the front of
// the temporary), which -Werror turns into a failed Release build.

#include <string>
#include <string_view>

inline std::string numbered_key(std::string_view prefix, long long number) {
    std::string key(prefix);
    key += std::to_string(number);
    return key;
}
