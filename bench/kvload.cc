// kvload: a small closed-loop load generator that speaks BOTH the memcached
// text protocol (set/get) and Redis RESP (SET/GET), so that one tool, with the
// same connection handling, key pattern and timing, drives memkeep and Redis.
// (memcaslap cannot speak RESP and redis-benchmark cannot speak memcached.)
//
// How it loads: one thread, one epoll loop, --connections non-blocking
// sockets to 127.0.0.1. Each connection is a closed loop: it sends a batch of
// --pipeline requests in one write, waits until every reply of the batch has
// arrived, then sends the next batch. Keys are uniform random over --keys keys
// ("kv:000000042", 12 bytes); a request is a get with probability --get-ratio
// (1 for --workload get, 0 for set). The value of key i is a fixed function of
// i, so every get reply is checked byte for byte, whatever wrote the key.
//
// Load phase (default for get and mix; --load yes|no to force): before the
// measurement every key is set once, pipelined 64 deep, replies checked. It is
// not counted. --duration 0 means load only.
//
// Measurement: --warmup seconds uncounted, then --duration seconds counted. A
// request counts when its reply arrives inside the counted window and its
// batch was sent inside it. Its latency runs (CLOCK_MONOTONIC) from just
// before the write() of its batch to the read() that completed its reply, so
// with --pipeline N it includes waiting behind the N-1 others of the batch.
//
// Checked replies: memcached STORED, VALUE <key> <flags> <len>\r\n<data>\r\nEND
// (key, length and bytes must match) or END (a miss); Redis +OK, $<len> bulk
// (length and bytes must match) or $-1 (a miss). Anything else is an error;
// an error reply line (ERROR, CLIENT_ERROR, SERVER_ERROR, -ERR) is counted and
// the connection goes on; a reply that cannot be parsed, or a closed
// connection, counts an error and ends that connection ("broken").
//
// Output: one JSON line on stdout. Exit status 0 when there was no error, no
// broken connection and no reply left outstanding at the end; 1 otherwise
// (the JSON line is printed either way); 2 on bad usage or connect failure.
//
// Key distribution (--key-dist, for the measured phase; the load phase
// always sets every key once):
//   uniform         every key equally likely (the default)
//   zipf            key of popularity rank r (1..N) with probability
//                   proportional to 1/r^s (--zipf-s, default 0.99), drawn
//                   exactly by binary search in a table of the cumulative
//                   distribution (8 bytes per key)
//   hotcold         --hot-share (default 0.9) of the requests go to a hot set
//                   of --hot-keys (default 0.1) of the keys, uniform within
//                   the hot and within the cold set
// Popularity ranks are scattered over the key space by a fixed bijection
// (rank r -> key (r * A + B) mod N), so the hot keys are neither the first nor
// the last keys the load phase wrote (which would make them all on disk, or
// all in RAM, in a cache smaller than the working set).
//
// Value sizes: --value-size N alone gives every key N bytes. With
// --value-size-max M (> N) the value of key i has a size in [N, M] fixed by a
// hash of i, so a get is still checked for its exact length and bytes.
//
// The JSON line also gives get-only figures (gets_per_s, get_hits,
// get_hit_ratio, get_p50_us, get_p99_us), for workloads whose sets should not
// be mixed into read latency.
//
// TLS (--tls, memcached protocol or RESP over TLS): each connection does its
// TLS handshake (OpenSSL, SSL_CTX with no certificate verification, TLS 1.2
// or later, whatever the server picks) right after connect and before the
// load phase and the measurement, so handshakes are never timed; then the
// same epoll loop runs with non-blocking SSL_write/SSL_read (WANT_READ /
// WANT_WRITE handled like EAGAIN; SSL_read is called until it wants more
// bytes, since OpenSSL may hold decrypted data that epoll cannot see). Needs
// OpenSSL's headers at build time and -lssl -lcrypto at link time (the bench
// harnesses pass them); built without the headers, --tls is refused.
//
// Usage:
//   kvload --port 11211 --protocol memcached|redis --workload set|get|mix [--tls]
//          [--get-ratio 0.9] [--value-size 100] [--value-size-max 0] [--keys 100000]
//          [--key-dist uniform|zipf|hotcold] [--zipf-s 0.99] [--hot-keys 0.1] [--hot-share 0.9]
//          [--connections 16] [--pipeline 1] [--duration 5] [--warmup 1]
//          [--seed 1] [--load auto|yes|no] [--host 127.0.0.1]

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

#if __has_include(<openssl/ssl.h>)
#include <openssl/err.h>
#include <openssl/ssl.h>
#define KVLOAD_HAVE_TLS 1
#else
#define KVLOAD_HAVE_TLS 0
#endif

namespace {

constexpr int kLoadDepth = 64;          // pipeline depth of the load phase
constexpr double kDrainTimeoutS = 5.0;  // replies still missing this long after the end are errors
constexpr int kKeyDigits = 9;

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "kvload: %s\n(see the comment at the top of bench/kvload.cc for usage)\n", msg.c_str());
  std::exit(2);
}

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  bool redis = false;
  std::string workload = "set";
  double get_ratio = -1;  // -1: from the workload
  int value_size = 100;
  int value_size_max = 0;  // 0: every value is value_size bytes
  std::string key_dist = "uniform";
  double zipf_s = 0.99;
  double hot_keys = 0.1, hot_share = 0.9;
  int64_t keys = 100000;
  int connections = 16;
  int pipeline = 1;
  double duration = 5;
  double warmup = 1;
  uint64_t seed = 1;
  std::string load = "auto";
  bool tls = false;
};

// splitmix64: small, fast, good enough for picking keys.
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }
};

// The value of key i: a slice of a large block of pseudo-random letters,
// starting at an offset chosen by i, with i's decimal digits written over its
// start (when it is long enough), so a reply carrying another key's value does
// not pass the check. Random letters, and slices far apart, keep the values
// about as incompressible as real data (RocksDB compresses its files; Redis's
// AOF does not), instead of a repeating pattern that compresses to nothing.
class Values {
 public:
  explicit Values(int size, int size_max = 0) : size_(size), size_max_(std::max(size, size_max)) {
    pattern_.resize(std::max<size_t>(size_t(1) << 20, size_t(size_max_) * 4));
    Rng rng{12345};
    for (char& c : pattern_) c = char('a' + rng.next() % 26);
  }
  // The size of key i's value: fixed, or in [size, size_max] by a hash of i.
  int size_of(int64_t i) const {
    if (size_max_ == size_) return size_;
    Rng h{uint64_t(i) * 0x2545f4914f6cdd1dULL + 7};
    return size_ + int(h.next() % uint64_t(size_max_ - size_ + 1));
  }
  void append(std::string& out, int64_t i) const {
    size_t start = out.size();
    int n = size_of(i);
    out.append(pattern_.data() + offset(i), size_t(n));
    if (n >= kKeyDigits) write_digits(&out[start], i);
  }
  bool matches(const char* p, int64_t i) const {
    const char* want = pattern_.data() + offset(i);
    int n = size_of(i);
    if (n >= kKeyDigits) {
      char digits[kKeyDigits];
      write_digits(digits, i);
      return std::memcmp(p, digits, kKeyDigits) == 0 &&
             std::memcmp(p + kKeyDigits, want + kKeyDigits, size_t(n - kKeyDigits)) == 0;
    }
    return std::memcmp(p, want, size_t(n)) == 0;
  }
  int size() const { return size_; }
  bool fixed() const { return size_max_ == size_; }

  static void write_digits(char* p, int64_t i) {
    for (int d = kKeyDigits - 1; d >= 0; --d) {
      p[d] = char('0' + i % 10);
      i /= 10;
    }
  }

 private:
  size_t offset(int64_t i) const { return size_t(uint64_t(i) * 2654435761u % (pattern_.size() - size_t(size_max_) + 1)); }
  int size_;
  int size_max_;
  std::string pattern_;
};

void append_key(std::string& out, int64_t i) {
  out.append("kv:");
  char digits[kKeyDigits];
  Values::write_digits(digits, i);
  out.append(digits, kKeyDigits);
}
constexpr int kKeyLen = 3 + kKeyDigits;

// Picks the key of the next request (see "Key distribution" at the top).
class KeyPicker {
 public:
  KeyPicker(const std::string& dist, int64_t n, double zipf_s, double hot_keys, double hot_share)
      : n_(n), hot_share_(hot_share) {
    if (dist == "zipf") {
      kind_ = kZipf;
      cdf_.resize(size_t(n));
      double sum = 0;
      for (int64_t r = 0; r < n; ++r) cdf_[size_t(r)] = (sum += std::pow(double(r + 1), -zipf_s));
      for (double& c : cdf_) c /= sum;
    } else if (dist == "hotcold") {
      kind_ = kHotCold;
      hot_n_ = std::clamp<int64_t>(int64_t(std::llround(hot_keys * double(n))), 1, n);
    }
    // A multiplier coprime with n makes rank -> (rank * a + b) mod n a bijection.
    a_ = 1;
    for (uint64_t cand : {2654435761ULL, 40503ULL, 7919ULL, 104729ULL, 15485863ULL, 1ULL})
      if (std::gcd(cand % uint64_t(n), uint64_t(n)) == 1 || n == 1) {
        a_ = cand % uint64_t(n);
        break;
      }
    b_ = uint64_t(n) / 3;
  }
  int64_t pick(Rng& rng) const {
    uint64_t rank;
    switch (kind_) {
      case kUniform:
        return int64_t(rng.next() % uint64_t(n_));
      case kZipf:
        rank = uint64_t(std::lower_bound(cdf_.begin(), cdf_.end(), rng.uniform()) - cdf_.begin());
        if (rank >= uint64_t(n_)) rank = uint64_t(n_ - 1);
        break;
      default:  // kHotCold
        if (hot_n_ == n_ || rng.uniform() < hot_share_) rank = rng.next() % uint64_t(hot_n_);
        else rank = uint64_t(hot_n_) + rng.next() % uint64_t(n_ - hot_n_);
    }
    return int64_t((unsigned __int128)rank * a_ % uint64_t(n_) + b_) % n_;
  }

 private:
  enum Kind { kUniform, kZipf, kHotCold } kind_ = kUniform;
  int64_t n_;
  double hot_share_;
  int64_t hot_n_ = 0;
  uint64_t a_ = 1, b_ = 0;
  std::vector<double> cdf_;
};

struct Pending {
  bool get;
  int64_t key;
};

struct Conn {
  int fd = -1;
#if KVLOAD_HAVE_TLS
  SSL* ssl = nullptr;  // --tls only
#endif
  bool broken = false;
  bool want_out = false;  // EPOLLOUT registered
  std::string out;
  size_t out_off = 0;
  std::string in;
  size_t in_off = 0;
  std::deque<Pending> pending;  // requests of the current batch still without a reply
  int64_t batch_start = 0;
  Rng rng{0};
  int64_t next_load_key = 0;  // load phase: this connection sets keys c, c+N, c+2N, ...
};

struct Counters {
  uint64_t ops = 0, gets = 0, sets = 0, misses = 0, errors = 0;
  uint64_t sent = 0;
  std::vector<int64_t> lat_ns;
  std::vector<int64_t> get_lat_ns;  // the gets' latencies alone
  std::string first_error;
  void error(const std::string& what) {
    ++errors;
    if (first_error.empty()) first_error = what;
  }
};

// The whole of s is a decimal number.
bool parse_size(std::string_view s, size_t& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size() && !s.empty();
}

std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 100)) {
    if (c >= 32 && c < 127 && c != '"' && c != '\\') out += c;
    else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", (unsigned char)c);
      out += buf;
    }
  }
  return out;
}

class Loader {
 public:
  explicit Loader(const Options& o)
      : o_(o),
        values_(o.value_size, o.value_size_max),
        keys_(o.key_dist, o.keys, o.zipf_s, o.hot_keys, o.hot_share),
        mc_set_suffix_(" 0 0 " + std::to_string(o.value_size) + "\r\n"),
        redis_get_prefix_("*2\r\n$3\r\nGET\r\n$" + std::to_string(kKeyLen) + "\r\n"),
        redis_set_prefix_("*3\r\n$3\r\nSET\r\n$" + std::to_string(kKeyLen) + "\r\n"),
        redis_set_middle_("\r\n$" + std::to_string(o.value_size) + "\r\n") {}

  void connect_all() {
    epfd_ = epoll_create1(0);
    if (epfd_ < 0) usage_error(std::string("epoll_create1: ") + std::strerror(errno));
    conns_.resize(size_t(o_.connections));
    for (int c = 0; c < o_.connections; ++c) {
      Conn& k = conns_[size_t(c)];
      k.fd = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(uint16_t(o_.port));
      inet_pton(AF_INET, o_.host.c_str(), &addr.sin_addr);
      if (k.fd < 0 || connect(k.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        usage_error("connect to " + o_.host + ":" + std::to_string(o_.port) + ": " + std::strerror(errno));
      int one = 1;
      setsockopt(k.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (o_.tls) handshake(k);  // blocking, before any timing
      fcntl(k.fd, F_SETFL, fcntl(k.fd, F_GETFL) | O_NONBLOCK);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = uint32_t(c);
      epoll_ctl(epfd_, EPOLL_CTL_ADD, k.fd, &ev);
      k.rng.s = o_.seed * 1000003 + uint64_t(c) * 7919 + 1;
      k.next_load_key = c;
    }
  }

#if KVLOAD_HAVE_TLS
  static std::string tls_error_text() {
    unsigned long e = ERR_get_error();
    char buf[256];
    if (e == 0) return std::strerror(errno);
    ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return buf;
  }
  void handshake(Conn& k) {
    if (!ssl_ctx_) {
      ssl_ctx_ = SSL_CTX_new(TLS_client_method());
      if (!ssl_ctx_) usage_error("SSL_CTX_new: " + tls_error_text());
      SSL_CTX_set_verify(ssl_ctx_, SSL_VERIFY_NONE, nullptr);  // self-signed test certificates
      SSL_CTX_set_min_proto_version(ssl_ctx_, TLS1_2_VERSION);
      SSL_CTX_set_mode(ssl_ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
    k.ssl = SSL_new(ssl_ctx_);
    if (!k.ssl || SSL_set_fd(k.ssl, k.fd) != 1) usage_error("SSL_new: " + tls_error_text());
    if (SSL_connect(k.ssl) != 1) usage_error("TLS handshake with port " + std::to_string(o_.port) + ": " + tls_error_text());
    if (tls_version_.empty()) tls_version_ = std::string(SSL_get_version(k.ssl)) + " " + SSL_get_cipher_name(k.ssl);
  }
#else
  void handshake(Conn&) { usage_error("--tls: kvload was built without OpenSSL headers"); }
#endif
  const std::string& tls_version() const { return tls_version_; }

  // Sets every key once. Returns false if anything went wrong.
  bool load(Counters& cnt) {
    loading_ = true;
    counting_from_ = INT64_MAX;  // nothing is "counted" in the load phase
    count_until_ = INT64_MAX;
    run_loop(cnt, INT64_MAX);
    loading_ = false;
    return cnt.errors == 0 && broken_count() == 0;
  }

  // The measured phase: warmup, then the counted window. Returns the counted seconds.
  double run(Counters& cnt, uint64_t& outstanding_at_end) {
    int64_t start = now_ns();
    counting_from_ = start + int64_t(o_.warmup * 1e9);
    count_until_ = counting_from_ + int64_t(o_.duration * 1e9);
    outstanding_at_end = run_loop(cnt, count_until_);
    return double(count_until_ - counting_from_) / 1e9;
  }

  int broken_count() const {
    int n = 0;
    for (const Conn& k : conns_) n += k.broken;
    return n;
  }

 private:
  // Runs batches until `stop_at` (or, when loading, until every key is set),
  // then waits for the outstanding replies (at most kDrainTimeoutS). Returns
  // the number of requests that never got a reply.
  uint64_t run_loop(Counters& cnt, int64_t stop_at) {
    for (Conn& k : conns_)
      if (!k.broken && k.pending.empty()) send_batch(k, cnt);
    std::vector<epoll_event> events(conns_.size());
    int64_t drain_deadline = 0;
    while (true) {
      int64_t now = now_ns();
      bool stopping = now >= stop_at;
      stopping_ = stopping;
      size_t outstanding = 0;
      for (const Conn& k : conns_)
        if (!k.broken) outstanding += k.pending.size();
      if (outstanding == 0) {
        // Everything answered: done when stopping, or when loading and no connection has keys left.
        if (stopping || loading_) break;
      }
      if (stopping) {
        if (drain_deadline == 0) drain_deadline = now + int64_t(kDrainTimeoutS * 1e9);
        if (now >= drain_deadline) {
          cnt.error("replies still missing " + std::to_string(kDrainTimeoutS) + " s after the end");
          return outstanding;
        }
      }
      int timeout_ms = 10;
      int n = epoll_wait(epfd_, events.data(), int(events.size()), timeout_ms);
      if (n < 0) {
        if (errno == EINTR) continue;
        cnt.error(std::string("epoll_wait: ") + std::strerror(errno));
        return outstanding;
      }
      for (int e = 0; e < n; ++e) {
        Conn& k = conns_[events[size_t(e)].data.u32];
        if (k.broken) continue;
        if (events[size_t(e)].events & EPOLLOUT) flush(k, cnt);
        if (events[size_t(e)].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(k, cnt);
      }
    }
    return 0;
  }

  void set_want_out(Conn& k, bool want) {
    if (k.want_out == want) return;
    k.want_out = want;
    epoll_event ev{};
    ev.events = want ? uint32_t(EPOLLIN | EPOLLOUT) : uint32_t(EPOLLIN);
    ev.data.u32 = uint32_t(&k - conns_.data());
    epoll_ctl(epfd_, EPOLL_CTL_MOD, k.fd, &ev);
  }

  void break_conn(Conn& k, Counters& cnt, const std::string& why) {
    cnt.error(why);
    k.broken = true;
    k.pending.clear();
    epoll_ctl(epfd_, EPOLL_CTL_DEL, k.fd, nullptr);
#if KVLOAD_HAVE_TLS
    if (k.ssl) {
      SSL_free(k.ssl);
      k.ssl = nullptr;
    }
#endif
    close(k.fd);
    k.fd = -1;
  }

  void append_request(Conn& k, bool get, int64_t key) {
    std::string& out = k.out;
    if (!o_.redis) {
      out.append(get ? "get " : "set ");
      append_key(out, key);
      if (get) {
        out.append("\r\n");
      } else {
        if (values_.fixed()) out.append(mc_set_suffix_);  // " 0 0 <len>\r\n"
        else out.append(" 0 0 " + std::to_string(values_.size_of(key)) + "\r\n");
        values_.append(out, key);
        out.append("\r\n");
      }
    } else {
      out.append(get ? redis_get_prefix_ : redis_set_prefix_);  // "*N\r\n$3\r\nGET\r\n$12\r\n"
      append_key(out, key);
      if (get) {
        out.append("\r\n");
      } else {
        if (values_.fixed()) out.append(redis_set_middle_);  // "\r\n$<len>\r\n"
        else out.append("\r\n$" + std::to_string(values_.size_of(key)) + "\r\n");
        values_.append(out, key);
        out.append("\r\n");
      }
    }
    k.pending.push_back({get, key});
  }

  void send_batch(Conn& k, Counters& cnt) {
    if (k.broken || stopping_) return;
    k.out.clear();
    k.out_off = 0;
    if (loading_) {
      for (int i = 0; i < kLoadDepth && k.next_load_key < o_.keys; ++i) {
        append_request(k, false, k.next_load_key);
        k.next_load_key += o_.connections;
      }
      if (k.pending.empty()) return;  // this connection has set all its keys
    } else {
      for (int i = 0; i < o_.pipeline; ++i) {
        bool get = o_.get_ratio >= 1.0 || (o_.get_ratio > 0 && k.rng.uniform() < o_.get_ratio);
        append_request(k, get, keys_.pick(k.rng));
      }
    }
    cnt.sent += k.pending.size();
    k.batch_start = now_ns();
    flush(k, cnt);
  }

  void flush(Conn& k, Counters& cnt) {
#if KVLOAD_HAVE_TLS
    if (k.ssl) {
      while (k.out_off < k.out.size()) {
        ERR_clear_error();
        int w = SSL_write(k.ssl, k.out.data() + k.out_off, int(k.out.size() - k.out_off));
        if (w > 0) {
          k.out_off += size_t(w);
          continue;
        }
        int err = SSL_get_error(k.ssl, w);
        if (err == SSL_ERROR_WANT_WRITE) {
          set_want_out(k, true);
          return;
        }
        if (err == SSL_ERROR_WANT_READ) return;  // resumed from on_readable
        break_conn(k, cnt, "SSL_write: " + tls_error_text());
        return;
      }
      set_want_out(k, false);
      return;
    }
#endif
    while (k.out_off < k.out.size()) {
      ssize_t w = write(k.fd, k.out.data() + k.out_off, k.out.size() - k.out_off);
      if (w > 0) {
        k.out_off += size_t(w);
      } else if (w < 0 && errno == EINTR) {
        continue;
      } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        set_want_out(k, true);
        return;
      } else {
        break_conn(k, cnt, std::string("write: ") + std::strerror(errno));
        return;
      }
    }
    set_want_out(k, false);
  }

  void on_readable(Conn& k, Counters& cnt) {
    char buf[65536];
#if KVLOAD_HAVE_TLS
    if (k.ssl && k.out_off < k.out.size() && !k.want_out) flush(k, cnt);  // a write that wanted a read
    if (k.broken) return;
    // SSL_read until it wants more bytes from the socket: OpenSSL may hold
    // decrypted data that epoll cannot report.
    while (k.ssl) {
      ERR_clear_error();
      int r = SSL_read(k.ssl, buf, int(sizeof buf));
      if (r > 0) {
        if (k.in_off > 0 && k.in_off == k.in.size()) {
          k.in.clear();
          k.in_off = 0;
        }
        k.in.append(buf, size_t(r));
        continue;
      }
      int err = SSL_get_error(k.ssl, r);
      if (err == SSL_ERROR_WANT_READ) break;
      if (err == SSL_ERROR_WANT_WRITE) {
        set_want_out(k, true);
        break;
      }
      break_conn(k, cnt, err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0)
                             ? "server closed the connection"
                             : "SSL_read: " + tls_error_text());
      return;
    }
#endif
    while (!tls_on(k)) {
      ssize_t r = read(k.fd, buf, sizeof buf);
      if (r > 0) {
        if (k.in_off > 0 && k.in_off == k.in.size()) {
          k.in.clear();
          k.in_off = 0;
        }
        k.in.append(buf, size_t(r));
        if (size_t(r) < sizeof buf) break;
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      break_conn(k, cnt, r == 0 ? "server closed the connection" : std::string("read: ") + std::strerror(errno));
      return;
    }
    int64_t t = now_ns();
    parse_replies(k, cnt, t);
    if (k.broken) return;
    if (k.in_off > 0 && k.in_off * 2 > k.in.size()) {
      k.in.erase(0, k.in_off);
      k.in_off = 0;
    }
    if (k.pending.empty()) send_batch(k, cnt);
  }

  // One complete reply for k.pending.front(): count it.
  void done(Conn& k, Counters& cnt, int64_t t, bool ok, bool miss) {
    Pending p = k.pending.front();
    k.pending.pop_front();
    if (!(k.batch_start >= counting_from_ && t <= count_until_)) return;
    if (!ok) return;  // already counted as an error
    ++cnt.ops;
    if (p.get) {
      ++cnt.gets;
      if (miss) ++cnt.misses;
    } else {
      ++cnt.sets;
    }
    cnt.lat_ns.push_back(t - k.batch_start);
    if (p.get) cnt.get_lat_ns.push_back(t - k.batch_start);
  }

  // Returns the line at k.in_off (without \r\n) and sets `next` past it, or
  // returns false when no complete line has arrived yet.
  bool line(Conn& k, std::string_view& out, size_t& next) {
    size_t eol = k.in.find("\r\n", k.in_off);
    if (eol == std::string::npos) return false;
    out = std::string_view(k.in).substr(k.in_off, eol - k.in_off);
    next = eol + 2;
    return true;
  }

  static bool is_error_line(std::string_view l, bool redis) {
    if (redis) return !l.empty() && l[0] == '-';
    return l == "ERROR" || l.rfind("CLIENT_ERROR", 0) == 0 || l.rfind("SERVER_ERROR", 0) == 0;
  }

  void parse_replies(Conn& k, Counters& cnt, int64_t t) {
    while (!k.pending.empty() && !k.broken) {
      const Pending p = k.pending.front();
      std::string_view l;
      size_t next;
      if (!line(k, l, next)) return;
      const std::string what = p.get ? (o_.redis ? "GET" : "get") : (o_.redis ? "SET" : "set");  // short: no allocation
      if (is_error_line(l, o_.redis)) {
        cnt.error(what + ": " + printable(l));
        k.in_off = next;
        done(k, cnt, t, false, false);
        continue;
      }
      if (!p.get) {
        if (l != (o_.redis ? "+OK" : "STORED")) {
          break_conn(k, cnt, what + ": unexpected reply " + printable(l));
          return;
        }
        k.in_off = next;
        done(k, cnt, t, true, false);
        continue;
      }
      // A get.
      if ((!o_.redis && l == "END") || (o_.redis && l == "$-1")) {
        k.in_off = next;
        done(k, cnt, t, true, true);
        continue;
      }
      size_t data_len = 0;
      if (!o_.redis) {
        // VALUE <key> <flags> <bytes>
        char key[kKeyLen + 1];
        std::string kstr;
        kstr.reserve(kKeyLen);
        append_key(kstr, p.key);
        std::memcpy(key, kstr.data(), kKeyLen);
        key[kKeyLen] = ' ';
        if (l.size() < 6 + kKeyLen + 1 || l.substr(0, 6) != "VALUE " ||
            std::memcmp(l.data() + 6, key, kKeyLen + 1) != 0) {
          break_conn(k, cnt, what + ": unexpected reply " + printable(l));
          return;
        }
        std::string_view rest = l.substr(6 + kKeyLen + 1);  // <flags> <bytes>
        size_t sp = rest.find(' ');
        if (sp == std::string_view::npos) {
          break_conn(k, cnt, what + ": bad VALUE line " + printable(l));
          return;
        }
        if (!parse_size(rest.substr(sp + 1), data_len)) {
          break_conn(k, cnt, what + ": bad VALUE line " + printable(l));
          return;
        }
      } else {
        if (l.empty() || l[0] != '$') {
          break_conn(k, cnt, what + ": unexpected reply " + printable(l));
          return;
        }
        if (!parse_size(l.substr(1), data_len)) {
          break_conn(k, cnt, what + ": bad bulk length " + printable(l));
          return;
        }
      }
      if (data_len != size_t(values_.size_of(p.key))) {
        break_conn(k, cnt, what + ": value of " + std::to_string(data_len) + " bytes, expected " +
                               std::to_string(values_.size_of(p.key)));
        return;
      }
      std::string_view trailer = o_.redis ? "\r\n" : "\r\nEND\r\n";
      if (k.in.size() - next < data_len + trailer.size()) return;  // not all here yet
      const char* data = k.in.data() + next;
      if (std::string_view(data + data_len, trailer.size()) != trailer) {
        break_conn(k, cnt, what + ": bad end of value reply");
        return;
      }
      bool ok = values_.matches(data, p.key);
      if (!ok) cnt.error(what + ": wrong value bytes for key " + std::to_string(p.key));
      k.in_off = next + data_len + trailer.size();
      done(k, cnt, t, ok, false);
    }
    if (k.pending.empty() && k.in_off < k.in.size()) {
      break_conn(k, cnt, "unexpected bytes after the replies: " + printable(std::string_view(k.in).substr(k.in_off)));
    }
  }

  static bool tls_on([[maybe_unused]] const Conn& k) {
#if KVLOAD_HAVE_TLS
    return k.ssl != nullptr;
#else
    return false;
#endif
  }

  const Options& o_;
#if KVLOAD_HAVE_TLS
  SSL_CTX* ssl_ctx_ = nullptr;
#endif
  std::string tls_version_;
  Values values_;
  KeyPicker keys_;
  const std::string mc_set_suffix_, redis_get_prefix_, redis_set_prefix_, redis_set_middle_;
  std::vector<Conn> conns_;
  int epfd_ = -1;
  bool loading_ = false;
  bool stopping_ = false;
  int64_t counting_from_ = 0, count_until_ = 0;
};

double percentile_us(std::vector<int64_t>& v, double q) {
  if (v.empty()) return 0;
  size_t rank = size_t(std::max(1.0, std::ceil(q * double(v.size()))));  // nearest rank
  std::nth_element(v.begin(), v.begin() + long(rank - 1), v.end());
  return double(v[rank - 1]) / 1000.0;
}

Options parse(int argc, char** argv) {
  Options o;
  std::string proto = "memcached";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage_error("missing value for " + a);
      return argv[++i];
    };
    if (a == "--host") o.host = val();
    else if (a == "--port") o.port = std::atoi(val().c_str());
    else if (a == "--protocol") proto = val();
    else if (a == "--workload") o.workload = val();
    else if (a == "--get-ratio") o.get_ratio = std::atof(val().c_str());
    else if (a == "--value-size") o.value_size = std::atoi(val().c_str());
    else if (a == "--value-size-max") o.value_size_max = std::atoi(val().c_str());
    else if (a == "--key-dist") o.key_dist = val();
    else if (a == "--zipf-s") o.zipf_s = std::atof(val().c_str());
    else if (a == "--hot-keys") o.hot_keys = std::atof(val().c_str());
    else if (a == "--hot-share") o.hot_share = std::atof(val().c_str());
    else if (a == "--keys") o.keys = std::atoll(val().c_str());
    else if (a == "--connections") o.connections = std::atoi(val().c_str());
    else if (a == "--pipeline") o.pipeline = std::atoi(val().c_str());
    else if (a == "--duration") o.duration = std::atof(val().c_str());
    else if (a == "--warmup") o.warmup = std::atof(val().c_str());
    else if (a == "--seed") o.seed = std::strtoull(val().c_str(), nullptr, 10);
    else if (a == "--load") o.load = val();
    else if (a == "--tls") o.tls = true;
    else usage_error("unknown option " + a);
  }
  if (o.host != "127.0.0.1") usage_error("only --host 127.0.0.1 is allowed");
  if (o.port <= 0 || o.port > 65535) usage_error("--port is required");
  if (proto != "memcached" && proto != "redis") usage_error("--protocol memcached|redis");
  o.redis = proto == "redis";
  if (o.workload == "set") o.get_ratio = 0;
  else if (o.workload == "get") o.get_ratio = 1;
  else if (o.workload == "mix") {
    if (o.get_ratio < 0) o.get_ratio = 0.9;
  } else usage_error("--workload set|get|mix");
  if (o.get_ratio < 0 || o.get_ratio > 1) usage_error("--get-ratio must be in [0, 1]");
  if (o.value_size < 1 || o.value_size > 16 * 1024 * 1024) usage_error("--value-size out of range");
  if (o.value_size_max != 0 && (o.value_size_max < o.value_size || o.value_size_max > 16 * 1024 * 1024))
    usage_error("--value-size-max must be 0 or in [--value-size, 16 MiB]");
  if (o.key_dist != "uniform" && o.key_dist != "zipf" && o.key_dist != "hotcold")
    usage_error("--key-dist uniform|zipf|hotcold");
  if (o.key_dist == "zipf" && (o.zipf_s <= 0 || o.zipf_s > 10 || o.keys > 100000000))
    usage_error("--zipf-s must be in (0, 10] and --keys at most 100,000,000 for zipf");
  if (o.hot_keys <= 0 || o.hot_keys > 1 || o.hot_share < 0 || o.hot_share > 1)
    usage_error("--hot-keys must be in (0, 1] and --hot-share in [0, 1]");
  if (o.keys < 1 || o.keys >= 1000000000) usage_error("--keys must be in [1, 999999999]");
  if (o.connections < 1 || o.connections > 4096) usage_error("--connections out of range");
  if (o.pipeline < 1 || o.pipeline > 4096) usage_error("--pipeline out of range");
  if (o.duration < 0 || o.duration > 3600 || o.warmup < 0 || o.warmup > 3600) usage_error("bad --duration/--warmup");
  if (o.load != "auto" && o.load != "yes" && o.load != "no") usage_error("--load auto|yes|no");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  bool do_load = o.load == "yes" || (o.load == "auto" && o.get_ratio > 0);
  Loader loader(o);
  loader.connect_all();

  Counters load_cnt;
  double load_s = 0;
  bool load_ok = true;
  if (do_load) {
    int64_t t0 = now_ns();
    load_ok = loader.load(load_cnt);
    load_s = double(now_ns() - t0) / 1e9;
  }

  Counters cnt;
  uint64_t outstanding = 0;
  double counted_s = 0;
  if (load_ok && o.duration > 0) counted_s = loader.run(cnt, outstanding);

  double p50 = percentile_us(cnt.lat_ns, 0.50), p90 = percentile_us(cnt.lat_ns, 0.90);
  double p99 = percentile_us(cnt.lat_ns, 0.99), p999 = percentile_us(cnt.lat_ns, 0.999);
  double max_us = 0, mean_us = 0;
  for (int64_t v : cnt.lat_ns) {
    max_us = std::max(max_us, double(v) / 1000.0);
    mean_us += double(v) / 1000.0;
  }
  if (!cnt.lat_ns.empty()) mean_us /= double(cnt.lat_ns.size());
  double get_p50 = percentile_us(cnt.get_lat_ns, 0.50), get_p99 = percentile_us(cnt.get_lat_ns, 0.99);
  uint64_t get_hits = cnt.gets - cnt.misses;
  uint64_t errors = cnt.errors + load_cnt.errors;
  std::string first_error = !load_cnt.first_error.empty() ? "load: " + load_cnt.first_error : cnt.first_error;
  int broken = loader.broken_count();

  std::printf(
      "{\"protocol\":\"%s\",\"workload\":\"%s\",\"get_ratio\":%.3f,\"value_size\":%d,\"keys\":%" PRId64
      ",\"connections\":%d,\"pipeline\":%d,\"seed\":%" PRIu64 ",\"loaded\":%s,\"load_s\":%.3f,\"load_errors\":%" PRIu64
      ",\"warmup_s\":%.3f,\"duration_s\":%.3f,\"ops\":%" PRIu64 ",\"ops_per_s\":%.1f,\"gets\":%" PRIu64
      ",\"sets\":%" PRIu64 ",\"get_misses\":%" PRIu64 ",\"errors\":%" PRIu64
      ",\"broken_connections\":%d,\"outstanding_at_end\":%" PRIu64
      ",\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,\"mean_us\":%.1f"
      ",\"key_dist\":\"%s\",\"zipf_s\":%.3f,\"hot_keys\":%.3f,\"hot_share\":%.3f,\"value_size_max\":%d"
      ",\"gets_per_s\":%.1f,\"get_hits\":%" PRIu64 ",\"get_hit_ratio\":%.5f,\"get_p50_us\":%.1f,\"get_p99_us\":%.1f"
      ",\"tls\":\"%s\",\"first_error\":\"%s\"}\n",
      o.redis ? "redis" : "memcached", o.workload.c_str(), o.get_ratio, o.value_size, o.keys, o.connections,
      o.pipeline, o.seed, do_load ? "true" : "false", load_s, load_cnt.errors, o.warmup, counted_s, cnt.ops,
      counted_s > 0 ? double(cnt.ops) / counted_s : 0.0, cnt.gets, cnt.sets, cnt.misses, errors, broken,
      outstanding, p50, p90, p99, p999, max_us, mean_us, o.key_dist.c_str(), o.zipf_s, o.hot_keys, o.hot_share,
      std::max(o.value_size, o.value_size_max), counted_s > 0 ? double(cnt.gets) / counted_s : 0.0, get_hits,
      cnt.gets ? double(get_hits) / double(cnt.gets) : 0.0, get_p50, get_p99,
      o.tls ? printable(loader.tls_version()).c_str() : "", printable(first_error).c_str());
  std::fflush(stdout);
  return (errors == 0 && broken == 0 && outstanding == 0 && load_ok) ? 0 : 1;
}
