#include "engine/tombstones.h"

namespace memkeep::engine {

void Tombstones::record(std::string_view key, Stamp stamp) {
    MutexLock guard(mutex_);
    auto [it, inserted] = by_key_.try_emplace(std::string(key), stamp);
    if (!inserted) {
        if (stamp.newer_than(it->second)) it->second = stamp;
        return;
    }
    order_.push_back(it->first);
    while (by_key_.size() > capacity_ && !order_.empty()) {
        by_key_.erase(order_.front());
        order_.pop_front();
    }
}

std::optional<Stamp> Tombstones::find(std::string_view key) const {
    MutexLock guard(mutex_);
    auto it = by_key_.find(std::string(key));
    if (it == by_key_.end()) return std::nullopt;
    return it->second;
}

void Tombstones::forget_older_than(uint64_t version) {
    MutexLock guard(mutex_);
    std::deque<std::string> kept;
    for (std::string& key : order_) {
        auto it = by_key_.find(key);
        if (it == by_key_.end()) continue;
        if (it->second.version < version) by_key_.erase(it);
        else kept.push_back(std::move(key));
    }
    order_.swap(kept);
}

void Tombstones::clear() {
    MutexLock guard(mutex_);
    by_key_.clear();
    order_.clear();
}

size_t Tombstones::size() const {
    MutexLock guard(mutex_);
    return by_key_.size();
}

void Tombstones::for_each(const std::function<void(std::string_view, Stamp)>& visit) const {
    MutexLock guard(mutex_);
    for (const auto& [key, stamp] : by_key_) visit(key, stamp);
}

}  // namespace memkeep::engine
