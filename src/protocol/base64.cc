#include "protocol/base64.h"

namespace memkeep::protocol {

namespace {
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int sextet(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}
}  // namespace

long base64_decode(std::string_view text, char* out, size_t capacity) {
    if (text.empty() || text.size() % 4 != 0) return -1;
    size_t length = 0;
    for (size_t i = 0; i < text.size(); i += 4) {
        bool last = i + 4 == text.size();
        int a = sextet(text[i]), b = sextet(text[i + 1]);
        int c = text[i + 2] == '=' && last ? -2 : sextet(text[i + 2]);
        int d = text[i + 3] == '=' && last ? -2 : sextet(text[i + 3]);
        if (a < 0 || b < 0 || c == -1 || d == -1 || (c == -2 && d != -2)) return -1;
        unsigned triple = (a << 18) | (b << 12) | ((c < 0 ? 0 : c) << 6) | (d < 0 ? 0 : d);
        int bytes = c < 0 ? 1 : d < 0 ? 2 : 3;
        if (length + bytes > capacity) return -1;
        out[length++] = static_cast<char>(triple >> 16);
        if (bytes > 1) out[length++] = static_cast<char>((triple >> 8) & 0xff);
        if (bytes > 2) out[length++] = static_cast<char>(triple & 0xff);
    }
    return static_cast<long>(length);
}

void base64_encode(std::string_view bytes, std::string* out) {
    size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        unsigned triple = (static_cast<unsigned char>(bytes[i]) << 16) |
                          (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                          static_cast<unsigned char>(bytes[i + 2]);
        out->push_back(kAlphabet[triple >> 18]);
        out->push_back(kAlphabet[(triple >> 12) & 63]);
        out->push_back(kAlphabet[(triple >> 6) & 63]);
        out->push_back(kAlphabet[triple & 63]);
    }
    size_t rest = bytes.size() - i;
    if (rest > 0) {
        unsigned triple = static_cast<unsigned char>(bytes[i]) << 16;
        if (rest == 2) triple |= static_cast<unsigned char>(bytes[i + 1]) << 8;
        out->push_back(kAlphabet[triple >> 18]);
        out->push_back(kAlphabet[(triple >> 12) & 63]);
        out->push_back(rest == 2 ? kAlphabet[(triple >> 6) & 63] : '=');
        out->push_back('=');
    }
}

}  // namespace memkeep::protocol
