#pragma once
// Output: the replies of one connection that wait to be written.
//
// Reply text (status lines, VALUE headers) is copied into an arena; item
// values are not copied: the output keeps a reference to the item and points
// the write at its memory. When the connection writes, all of it goes out in
// one writev.

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/item.h"

namespace memkeep::protocol {

class Output {
public:
    // Copies text into the arena.
    void append(std::string_view text);
    void append_number(uint64_t value);
    void append_signed(int64_t value);
    // Queues `bytes` (which live inside `item`) without copying; the item is
    // kept alive until written.
    void append_item_bytes(engine::ItemRef item, std::string_view bytes);

    bool empty() const { return pending_bytes_ == 0; }
    size_t pending_bytes() const { return pending_bytes_; }

    // Fills up to `max` iovecs with the unwritten bytes; returns the count.
    int gather(iovec* iov, int max) const;
    // Marks `written` bytes as sent.
    void consume(size_t written);
    // Drops everything unwritten.
    void clear();

    // A point in the output to go back to, dropping what was appended after
    // it (a multi-key reply that ends in an error is answered by the error alone).
    struct Mark {
        size_t segments, arena, items, pending;
    };
    Mark mark() const { return {segments_.size(), arena_.size(), held_items_.size(), pending_bytes_}; }
    void rewind(const Mark& mark);

    // ---- Replies held for the durable store ----------------------------------
    // In the durable mode the replies of a batch of requests wait until their
    // writes are in the store, and a write can still fail then. The handler
    // notes where each reply that waits for a write sits (`hold`); the
    // connection asks the engine, once the writes are done, whether they
    // were kept, and replaces the replies of those that were not with the
    // protocol's error reply (`replace_held`).

    // A point in the stream of everything appended (consumed bytes included).
    size_t position() const { return consumed_total_ + pending_bytes_; }
    struct HeldReply {
        size_t start = 0, end = 0;    // positions: the reply's bytes (may be none: a quiet success)
        uint64_t first_ticket = 0;    // the durability tickets of its writes
        uint64_t last_ticket = 0;
        uint64_t tag = 0;             // for the handler's error reply (binary: opcode and opaque)
    };
    void hold(const HeldReply& reply) { held_.push_back(reply); }
    const std::vector<HeldReply>& held() const { return held_; }
    void forget_held() { held_.clear(); }
    // Replaces the bytes of every held reply for which `kept` is false with
    // what `write_error` appends, then forgets the held replies. Rare (a
    // storage fault): the unwritten output is copied and rebuilt, item
    // values included. A reply already partly written is left as it is (the
    // connection writes nothing while replies are held, so none is).
    void replace_held(const std::function<bool(const HeldReply&)>& kept,
                      const std::function<void(const HeldReply&, Output&)>& write_error);

private:
    struct Segment {
        const char* external;   // nullptr: bytes live in the arena at `offset`
        size_t offset;
        size_t length;
    };

    std::string arena_;
    std::vector<Segment> segments_;
    std::vector<engine::ItemRef> held_items_;
    size_t first_segment_ = 0;     // segments before this one are fully written
    size_t first_offset_ = 0;      // bytes written of the first unwritten segment
    size_t pending_bytes_ = 0;
    size_t consumed_total_ = 0;    // bytes written since the output was made
    std::vector<HeldReply> held_;
};

}  // namespace memkeep::protocol
