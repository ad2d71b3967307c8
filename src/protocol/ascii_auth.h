#pragma once
// memcached's ascii authentication (-Y FILE): a password file of
// `user:password` lines, and the gate a text connection passes through
// before its commands reach TextHandler.
//
// A client authenticates with a fake storage command,
//     set <any key> <flags> <exptime> <length>\r\n<user> <password>\r\n
// and gets STORED; until then every line gets `CLIENT_ERROR
// unauthenticated` (quit, version and meta commands included, as in
// memcached 1.6.18). Authentication is connection state, not a command
// semantic: it lives here, in the protocol layer, and the engine never sees it.

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/handler.h"
#include "protocol/output.h"
#include "protocol/services.h"

namespace memkeep::protocol {

// The credentials of -Y. Loaded at start; reload() (SIGHUP) swaps them in
// atomically, and a file that cannot be read keeps the old ones. Thread-safe.
class AsciiAuthFile {
public:
    // Reads `path`; false with `error` naming the file when it cannot be
    // opened or has a line without ':'.
    bool load(const std::string& path, std::string* error);
    // Reads the same file again.
    bool reload(std::string* error) { return load(path_, error); }

    // True when `user` and `password` match a line exactly (compared in
    // constant time per entry).
    bool check(std::string_view user, std::string_view password) const;

    const std::string& path() const { return path_; }

    // The lines of a file's text: "user:password" each, split at the first
    // ':'; a password ends at '\r' or '\n'. False on a line without ':' (an
    // empty line included, as memcached).
    static bool parse(std::string_view text, std::vector<std::pair<std::string, std::string>>* entries);

private:
    std::string path_;
    mutable std::mutex mutex_;
    std::shared_ptr<const std::vector<std::pair<std::string, std::string>>> entries_;
};

// The handler of a text connection on a server started with -Y: answers
// every request with memcached's auth errors until the client
// authenticates, then hands the rest of the stream to `inner` (a TextHandler).
class AsciiAuthHandler : public Handler {
public:
    AsciiAuthHandler(HandlerContext context, const AsciiAuthFile& auth, std::unique_ptr<Handler> inner)
        : ctx_(context), auth_(auth), inner_(std::move(inner)) {}

    size_t process(std::string_view input, Output& out, size_t max_requests, size_t output_limit) override;
    bool close_requested() const override { return close_requested_ || inner_->close_requested(); }
    void write_storage_error(const Output::HeldReply& reply, Output& out) override {
        inner_->write_storage_error(reply, out);
    }

    bool authenticated() const { return authenticated_; }

private:
    // Handles one auth attempt or refused line at the start of `input`;
    // returns the bytes used (0: incomplete).
    size_t gate(std::string_view input, Output& out);

    HandlerContext ctx_;
    const AsciiAuthFile& auth_;
    std::unique_ptr<Handler> inner_;
    bool authenticated_ = false;
    bool close_requested_ = false;
    size_t payload_length_ = 0;   // set line read: the "<user> <password>\r\n" block's length
    bool awaiting_payload_ = false;
};

}  // namespace memkeep::protocol
