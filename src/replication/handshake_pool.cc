#include "replication/handshake_pool.h"

#include <unistd.h>

#include <algorithm>
#include <system_error>

namespace memkeep::replication {

HandshakePool::HandshakePool(Node& node, Admit admitted, size_t threads, size_t max_pending)
    : node_(node), admitted_(std::move(admitted)), thread_count_(threads), max_pending_(max_pending) {}

HandshakePool::~HandshakePool() { stop(); }

bool HandshakePool::start(std::string* error) {
    for (size_t i = 0; i < thread_count_; ++i) {
        try {
            threads_.emplace_back([this] { work(); });
        } catch (const std::system_error& failure) {
            *error = failure.what();
            break;
        }
    }
    return !threads_.empty();
}

bool HandshakePool::offer(int fd, std::string address, int64_t accepted_ms) {
    {
        std::lock_guard<std::mutex> guard(mutex_);
        if (stopping_ || queue_.size() + shaking_.size() >= max_pending_) return false;
        queue_.push_back(Waiting{fd, std::move(address), accepted_ms});
    }
    ready_.notify_one();
    return true;
}

void HandshakePool::work() {
    for (;;) {
        Waiting next;
        {
            std::unique_lock<std::mutex> lock(mutex_);
            ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
            if (stopping_) return;
            next = std::move(queue_.front());
            queue_.pop_front();
        }
        auto feed = std::make_unique<Feed>(node_, next.fd, std::move(next.address), next.accepted_ms);
        {
            std::lock_guard<std::mutex> guard(mutex_);
            if (stopping_) return;   // the Feed closes the connection
            shaking_.push_back(feed.get());
        }
        bool authenticated = feed->authenticate();
        {
            std::lock_guard<std::mutex> guard(mutex_);
            shaking_.erase(std::find(shaking_.begin(), shaking_.end(), feed.get()));
            if (stopping_) return;
        }
        if (authenticated) admitted_(std::move(feed));
    }
}

void HandshakePool::stop() {
    {
        std::lock_guard<std::mutex> guard(mutex_);
        if (stopping_) return;
        stopping_ = true;
        for (Feed* feed : shaking_) feed->stop();
        for (const Waiting& waiting : queue_) ::close(waiting.fd);
        queue_.clear();
    }
    ready_.notify_all();
    for (auto& thread : threads_) thread.join();
    threads_.clear();
}

}  // namespace memkeep::replication
