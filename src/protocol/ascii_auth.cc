#include "protocol/ascii_auth.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "protocol/numbers.h"

namespace memkeep::protocol {

namespace {

// memcached closes a connection that sends this much without a newline
// before authenticating.
constexpr size_t kMaxUnauthenticatedLine = 2048;
// An auth payload is "<user> <password>"; anything longer is not one.
constexpr size_t kMaxPayload = 4096;
// Replies an unauthenticated connection may leave unread before we stop
// reading from it (the connection's usual limit is 1 MB): a client that has
// not authenticated can make us hold only a few KB.
constexpr size_t kMaxUnauthenticatedOutput = 4096;

// Splits on single spaces, skipping empty tokens, as memcached's tokenizer.
std::vector<std::string_view> split_spaces(std::string_view text) {
    std::vector<std::string_view> tokens;
    size_t start = 0;
    while (start < text.size()) {
        size_t space = text.find(' ', start);
        if (space == std::string_view::npos) space = text.size();
        if (space > start) tokens.push_back(text.substr(start, space - start));
        start = space + 1;
    }
    return tokens;
}

// Compares without leaking, through timing, how many leading bytes matched.
bool equal_constant_time(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    return diff == 0;
}

}  // namespace

bool AsciiAuthFile::parse(std::string_view text, std::vector<std::pair<std::string, std::string>>* entries) {
    entries->clear();
    size_t start = 0;
    while (start < text.size()) {
        size_t newline = text.find('\n', start);
        if (newline == std::string_view::npos) newline = text.size();
        std::string_view line = text.substr(start, newline - start);
        start = newline + 1;
        size_t colon = line.find(':');
        if (colon == std::string_view::npos) return false;
        std::string_view password = line.substr(colon + 1);
        size_t end = password.find('\r');
        if (end != std::string_view::npos) password = password.substr(0, end);
        entries->emplace_back(std::string(line.substr(0, colon)), std::string(password));
    }
    return true;
}

bool AsciiAuthFile::load(const std::string& path, std::string* error) {
    std::ifstream file(path, std::ios::binary);
    if (!file) {
        *error = "could not open the auth file " + path + " (-Y): " + std::strerror(errno);
        return false;
    }
    std::ostringstream text;
    text << file.rdbuf();
    if (file.bad()) {
        *error = "could not read the auth file " + path + " (-Y): " + std::strerror(errno);
        return false;
    }
    auto entries = std::make_shared<std::vector<std::pair<std::string, std::string>>>();
    if (!parse(text.str(), entries.get())) {
        *error = "the auth file " + path + " (-Y) has a malformed line: each must be user:password";
        return false;
    }
    std::lock_guard<std::mutex> guard(mutex_);
    path_ = path;
    entries_ = std::move(entries);
    return true;
}

bool AsciiAuthFile::check(std::string_view user, std::string_view password) const {
    std::shared_ptr<const std::vector<std::pair<std::string, std::string>>> entries;
    {
        std::lock_guard<std::mutex> guard(mutex_);
        entries = entries_;
    }
    if (!entries) return false;
    bool found = false;
    for (const auto& [known_user, known_password] : *entries) {
        // Both compared every time, so the timing does not tell which one differed.
        bool user_ok = equal_constant_time(user, known_user);
        bool password_ok = equal_constant_time(password, known_password);
        found = found || (user_ok && password_ok);
    }
    return found;
}

size_t AsciiAuthHandler::process(std::string_view input, Output& out, size_t max_requests, size_t output_limit) {
    size_t position = 0;
    size_t handled = 0;
    stopped_at_limit_ = false;
    waiting_for_memory_ = false;
    while (!authenticated_ && !close_requested_ && position < input.size()) {
        if (handled >= max_requests || out.pending_bytes() >= std::min(output_limit, kMaxUnauthenticatedOutput)) {
            stopped_at_limit_ = true;
            return position;
        }
        size_t used = gate(input.substr(position), out);
        if (used == 0) return position;
        position += used;
        ++handled;
    }
    if (authenticated_ && !close_requested_ && position < input.size()) {
        position += inner_->process(input.substr(position), out, max_requests - handled, output_limit);
        stopped_at_limit_ = inner_->stopped_at_limit();
        waiting_for_memory_ = inner_->waiting_for_memory();
    }
    return position;
}

size_t AsciiAuthHandler::gate(std::string_view input, Output& out) {
    if (!awaiting_payload_) {
        size_t newline = input.find('\n');
        if (newline == std::string_view::npos) {
            if (input.size() > kMaxUnauthenticatedLine) close_requested_ = true;
            return 0;
        }
        // memcached keeps a '\r' on the last token; numbers stop at it.
        std::vector<std::string_view> tokens = split_spaces(input.substr(0, newline));
        uint64_t length = 0;
        if (tokens.size() < 5 || tokens[0] != "set" || !parse_u64(tokens[4], &length) || length > UINT32_MAX) {
            out.append("CLIENT_ERROR unauthenticated\r\n");
            return newline + 1;
        }
        if (length > kMaxPayload) {
            out.append("CLIENT_ERROR bad authentication token format\r\n");
            close_requested_ = true;
            return newline + 1;
        }
        payload_length_ = static_cast<size_t>(length);
        awaiting_payload_ = true;
        return newline + 1;
    }
    size_t block = payload_length_ + 2;
    if (input.size() < block) return 0;
    awaiting_payload_ = false;
    if (input.substr(payload_length_, 2) != "\r\n") {
        out.append("CLIENT_ERROR bad command line termination\r\n");
        return block;
    }
    std::string_view payload = input.substr(0, payload_length_);
    payload = payload.substr(0, payload.find('\0'));  // memcached reads it as a C string
    std::vector<std::string_view> tokens = split_spaces(payload);
    if (tokens.size() < 2) {
        out.append("CLIENT_ERROR bad authentication token format\r\n");
        return block;
    }
    ctx_.stats.auth_cmds.add();
    if (auth_.check(tokens[0], tokens[1])) {
        authenticated_ = true;
        out.append("STORED\r\n");
    } else {
        ctx_.stats.auth_errors.add();
        out.append("CLIENT_ERROR authentication failure\r\n");
    }
    return block;
}

}  // namespace memkeep::protocol
