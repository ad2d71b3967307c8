#include "protocol/prefix_stats.h"

#include <cstring>

namespace memkeep::protocol {

uint32_t murmur3_32(std::string_view data) {
    auto rotate = [](uint32_t x, int r) { return (x << r) | (x >> (32 - r)); };
    constexpr uint32_t c1 = 0xcc9e2d51, c2 = 0x1b873593;
    const auto* bytes = reinterpret_cast<const unsigned char*>(data.data());
    size_t blocks = data.size() / 4;
    uint32_t h = 0;
    for (size_t i = 0; i < blocks; ++i) {
        uint32_t k;
        std::memcpy(&k, bytes + 4 * i, 4);   // little-endian, as memcached on x86
        k = rotate(k * c1, 15) * c2;
        h = rotate(h ^ k, 13) * 5 + 0xe6546b64;
    }
    const unsigned char* tail = bytes + 4 * blocks;
    uint32_t k = 0;
    switch (data.size() & 3) {
        case 3: k ^= static_cast<uint32_t>(tail[2]) << 16; [[fallthrough]];
        case 2: k ^= static_cast<uint32_t>(tail[1]) << 8; [[fallthrough]];
        case 1:
            k ^= tail[0];
            h ^= rotate(k * c1, 15) * c2;
    }
    h ^= static_cast<uint32_t>(data.size());
    h ^= h >> 16;
    h *= 0x85ebca6b;
    h ^= h >> 13;
    h *= 0xc2b2ae35;
    h ^= h >> 16;
    return h;
}

PrefixStats::Counts* PrefixStats::find(std::string_view key) {
    // As memcached: the prefix ends at the first delimiter; a NUL before it,
    // or no delimiter at all, means no prefix.
    size_t length = 0;
    while (length < key.size() && key[length] != '\0' && key[length] != delimiter_) ++length;
    if (length == key.size() || key[length] != delimiter_) return nullptr;
    std::string_view prefix = key.substr(0, length);
    auto& bucket = buckets_[murmur3_32(prefix) % buckets_.size()];
    for (auto& counts : bucket) {
        if (counts->prefix == prefix) return counts.get();
    }
    if (prefixes_ >= kMaxPrefixes) return nullptr;
    ++prefixes_;
    bucket.push_back(std::make_unique<Counts>());
    bucket.back()->prefix.assign(prefix);
    return bucket.back().get();
}

void PrefixStats::record_get(std::string_view key, bool hit) {
    if (!enabled()) return;
    std::lock_guard<std::mutex> guard(mutex_);
    if (Counts* counts = find(key)) {
        ++counts->gets;
        if (hit) ++counts->hits;
    }
}

void PrefixStats::record_set(std::string_view key) {
    if (!enabled()) return;
    std::lock_guard<std::mutex> guard(mutex_);
    if (Counts* counts = find(key)) ++counts->sets;
}

void PrefixStats::record_delete(std::string_view key) {
    if (!enabled()) return;
    std::lock_guard<std::mutex> guard(mutex_);
    if (Counts* counts = find(key)) ++counts->deletes;
}

void PrefixStats::clear() {
    std::lock_guard<std::mutex> guard(mutex_);
    for (auto& bucket : buckets_) bucket.clear();
    prefixes_ = 0;
}

std::string PrefixStats::dump() const {
    std::string out;
    std::lock_guard<std::mutex> guard(mutex_);
    for (const auto& bucket : buckets_) {
        // memcached links a new prefix at the head of its bucket's chain.
        for (auto it = bucket.rbegin(); it != bucket.rend(); ++it) {
            const Counts& c = **it;
            out += "PREFIX " + c.prefix + " get " + std::to_string(c.gets) + " hit " + std::to_string(c.hits) +
                   " set " + std::to_string(c.sets) + " del " + std::to_string(c.deletes) + "\r\n";
        }
    }
    out += "END\r\n";
    return out;
}

}  // namespace memkeep::protocol
