#include "engine/item.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace memkeep::engine {

size_t item_footprint(size_t key_length, size_t value_length) {
    // glibc malloc: 8 bytes of chunk header, chunks are multiples of 16.
    size_t request = sizeof(Item) + key_length + value_length;
    return (request + 8 + 15) & ~size_t{15};
}

Item* allocate_item(std::string_view key, size_t value_length, uint32_t client_flags,
                    uint32_t exptime) {
    void* memory = std::malloc(sizeof(Item) + key.size() + value_length);
    if (!memory) return nullptr;
    Item* item = new (memory) Item{};
    item->refcount.store(1, std::memory_order_relaxed);
    item->exptime = exptime;
    item->client_flags = client_flags;
    item->value_length = static_cast<uint32_t>(value_length);
    item->key_length = static_cast<uint8_t>(key.size());
    std::memcpy(item->key_data(), key.data(), key.size());
    return item;
}

void release_item(Item* item, MemoryBudget& budget) {
    if (item->refcount.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    budget.give_back(item_footprint(item->key_length, item->value_length));
    item->~Item();
    std::free(item);
}

bool MemoryBudget::try_take(size_t bytes) {
    size_t current = used_.load(std::memory_order_relaxed);
    do {
        if (current + bytes > limit_) return false;
    } while (!used_.compare_exchange_weak(current, current + bytes, std::memory_order_relaxed));
    return true;
}

}  // namespace memkeep::engine
