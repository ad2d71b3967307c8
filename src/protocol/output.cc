#include "protocol/output.h"

#include <charconv>

namespace memkeep::protocol {

void Output::append(std::string_view text) {
    if (text.empty()) return;
    // Text that follows text extends the same segment, so a run of reply
    // lines becomes one iovec.
    if (!segments_.empty() && !segments_.back().external &&
        segments_.back().offset + segments_.back().length == arena_.size() &&
        segments_.size() - 1 >= first_segment_) {
        segments_.back().length += text.size();
    } else {
        segments_.push_back({nullptr, arena_.size(), text.size()});
    }
    arena_.append(text);
    pending_bytes_ += text.size();
}

void Output::append_number(uint64_t value) {
    char buffer[24];
    auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
    append(std::string_view(buffer, result.ptr - buffer));
}

void Output::append_signed(int64_t value) {
    char buffer[24];
    auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
    append(std::string_view(buffer, result.ptr - buffer));
}

void Output::append_item_bytes(engine::ItemRef item, std::string_view bytes) {
    if (bytes.empty()) return;
    segments_.push_back({bytes.data(), 0, bytes.size()});
    held_items_.push_back(std::move(item));
    pending_bytes_ += bytes.size();
}

int Output::gather(iovec* iov, int max) const {
    int count = 0;
    for (size_t i = first_segment_; i < segments_.size() && count < max; ++i) {
        const Segment& s = segments_[i];
        const char* base = s.external ? s.external : arena_.data() + s.offset;
        size_t skip = i == first_segment_ ? first_offset_ : 0;
        iov[count].iov_base = const_cast<char*>(base + skip);
        iov[count].iov_len = s.length - skip;
        ++count;
    }
    return count;
}

void Output::consume(size_t written) {
    pending_bytes_ -= written;
    consumed_total_ += written;
    while (written > 0) {
        Segment& s = segments_[first_segment_];
        size_t left = s.length - first_offset_;
        if (written < left) {
            first_offset_ += written;
            return;
        }
        written -= left;
        ++first_segment_;
        first_offset_ = 0;
    }
    if (pending_bytes_ == 0) clear();
}

void Output::rewind(const Mark& mark) {
    // Only unwritten output can be taken back.
    if (mark.segments < first_segment_ || mark.pending > pending_bytes_) return;
    segments_.resize(mark.segments);
    arena_.resize(mark.arena);
    held_items_.resize(mark.items);
    pending_bytes_ = mark.pending;
    // A text segment that was extended after the mark is cut back to it.
    if (!segments_.empty() && !segments_.back().external) {
        Segment& last = segments_.back();
        if (last.offset + last.length > arena_.size()) last.length = arena_.size() - last.offset;
    }
}

void Output::replace_held(const std::function<bool(const HeldReply&)>& kept,
                          const std::function<void(const HeldReply&, Output&)>& write_error) {
    std::vector<HeldReply> held;
    held.swap(held_);
    size_t base = consumed_total_;
    std::string bytes;
    bytes.reserve(pending_bytes_);
    for (size_t i = first_segment_; i < segments_.size(); ++i) {
        const Segment& s = segments_[i];
        const char* data = s.external ? s.external : arena_.data() + s.offset;
        size_t skip = i == first_segment_ ? first_offset_ : 0;
        bytes.append(data + skip, s.length - skip);
    }
    clear();
    size_t cursor = 0;
    for (const HeldReply& reply : held) {
        if (reply.start < base + cursor || reply.end > base + bytes.size() || kept(reply)) continue;
        append(std::string_view(bytes).substr(cursor, reply.start - base - cursor));
        write_error(reply, *this);
        cursor = reply.end - base;
    }
    append(std::string_view(bytes).substr(cursor));
}

void Output::clear() {
    arena_.clear();
    segments_.clear();
    held_items_.clear();
    first_segment_ = 0;
    first_offset_ = 0;
    pending_bytes_ = 0;
}

}  // namespace memkeep::protocol
