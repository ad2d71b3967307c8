// latency_sampler: measures request round-trip latency of two (or more)
// memcached-protocol servers at the same moment, at a low fixed rate, while a
// load generator keeps them busy.
//
// Why it exists: memcaslap only reports min/max/avg and a log2 histogram
// (buckets 256-511 us, 512-1023 us, ...), which cannot tell a p99 of 600 us
// from one of 1000 us. This tool keeps every sample and computes exact
// nearest-rank percentiles.
//
// How it samples: one connection per server. Every --interval-us it sends one
// request to each server back to back (the order alternates every tick so
// neither server is always first), then waits for all the replies together and
// checks each reply's bytes exactly. A server's latency runs (CLOCK_MONOTONIC)
// from just before its send() to the arrival of its reply's last byte. A tick
// that takes longer than the interval delays the next one (no catch-up burst).
//
// Usage:
//   latency_sampler --op get|set|mget --duration-s 8 --interval-us 1000
//                   --target NAME=127.0.0.1:PORT [--target NAME=127.0.0.1:PORT ...]
// Output, one line per target:
//   NAME samples=N errors=E p50_us=.. p90_us=.. p99_us=.. p999_us=.. max_us=.. mean_us=..
// Exit status 0 when every target answered every sample correctly, 1 otherwise.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr int kReplyTimeoutMs = 5000;  // no reply within this is an error (slower ones are samples)
constexpr int kMultigetKeys = 10;
constexpr int kValueSize = 100;

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

struct Target {
  std::string name;
  std::string host;
  int port = 0;
  int fd = -1;
  bool broken = false;  // after an error we stop sampling it (counted as errors)
  uint64_t errors = 0;
  std::vector<int64_t> samples_ns;
};

bool send_all(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += size_t(n);
  }
  return true;
}

// Reads exactly `want` bytes (the expected reply's length) within the timeout.
bool recv_exact(int fd, size_t want, std::string* out) {
  out->clear();
  char buf[65536];
  int64_t deadline = now_ns() + int64_t(kReplyTimeoutMs) * 1000000;
  while (out->size() < want) {
    int left_ms = int((deadline - now_ns()) / 1000000);
    if (left_ms <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, left_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    ssize_t n = recv(fd, buf, std::min(sizeof(buf), want - out->size()), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    out->append(buf, size_t(n));
  }
  return true;
}

bool connect_target(Target* t) {
  t->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (t->fd < 0) return false;
  int one = 1;
  setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(t->port));
  if (inet_pton(AF_INET, t->host.c_str(), &addr.sin_addr) != 1) return false;
  return connect(t->fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
}

// One request and the exact bytes a correct server answers.
struct Exchange {
  std::string request;
  std::string expected_reply;
};

std::string key_name(int i) { return "memkeep_bench_sampler_" + std::to_string(i); }

std::string value_bytes() { return std::string(kValueSize, 'v'); }

std::string get_hit_reply(const std::string& key) {
  return "VALUE " + key + " 0 " + std::to_string(kValueSize) + "\r\n" + value_bytes() + "\r\n";
}

Exchange make_exchange(const std::string& op) {
  Exchange ex;
  if (op == "set") {
    ex.request = "set " + key_name(0) + " 0 0 " + std::to_string(kValueSize) + "\r\n" + value_bytes() + "\r\n";
    ex.expected_reply = "STORED\r\n";
  } else if (op == "get") {
    ex.request = "get " + key_name(0) + "\r\n";
    ex.expected_reply = get_hit_reply(key_name(0)) + "END\r\n";
  } else {  // mget
    ex.request = "get";
    for (int i = 0; i < kMultigetKeys; i++) {
      ex.request += " " + key_name(i);
      ex.expected_reply += get_hit_reply(key_name(i));
    }
    ex.request += "\r\n";
    ex.expected_reply += "END\r\n";
  }
  return ex;
}

// Stores the keys the get/mget exchanges read, so every sample is a hit.
bool preload(Target* t) {
  std::string reply;
  for (int i = 0; i < kMultigetKeys; i++) {
    std::string req = "set " + key_name(i) + " 0 0 " + std::to_string(kValueSize) + "\r\n" + value_bytes() + "\r\n";
    if (!send_all(t->fd, req) || !recv_exact(t->fd, 8, &reply) || reply != "STORED\r\n") return false;
  }
  return true;
}

// One tick: send the request to every live target (in the given order), then
// collect the replies as they arrive. Each target's latency runs from just
// before its own send() to the arrival of the last byte of its reply, so the
// servers are measured at the same moment and neither waits for the other.
void sample_tick(std::vector<Target*>& order, const Exchange& ex) {
  struct Pending {
    Target* target;
    int64_t start_ns;
    std::string reply;
    bool done;
  };
  std::vector<Pending> pending;
  for (Target* t : order) {
    if (t->broken) {
      t->errors++;
      continue;
    }
    int64_t start = now_ns();
    if (!send_all(t->fd, ex.request)) {
      t->errors++;
      t->broken = true;
      fprintf(stderr, "%s: send failed\n", t->name.c_str());
      continue;
    }
    pending.push_back({t, start, std::string(), false});
  }

  const size_t want = ex.expected_reply.size();
  const int64_t deadline = now_ns() + int64_t(kReplyTimeoutMs) * 1000000;
  size_t open = pending.size();
  char buf[65536];
  while (open > 0) {
    int left_ms = int((deadline - now_ns()) / 1000000);
    if (left_ms <= 0) break;
    std::vector<pollfd> fds;
    std::vector<Pending*> owners;
    for (Pending& p : pending) {
      if (!p.done) {
        fds.push_back({p.target->fd, POLLIN, 0});
        owners.push_back(&p);
      }
    }
    int r = poll(fds.data(), fds.size(), left_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    for (size_t i = 0; i < fds.size(); i++) {
      if (!fds[i].revents) continue;
      Pending& p = *owners[i];
      ssize_t n = recv(p.target->fd, buf, std::min(sizeof(buf), want - p.reply.size()), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {  // closed or failed: treat as a finished, wrong reply
        p.done = true;
        open--;
        continue;
      }
      p.reply.append(buf, size_t(n));
      if (p.reply.size() == want) {
        int64_t elapsed = now_ns() - p.start_ns;
        p.done = true;
        open--;
        if (p.reply == ex.expected_reply) p.target->samples_ns.push_back(elapsed);
      }
    }
  }

  for (Pending& p : pending) {
    if (p.done && p.reply == ex.expected_reply) continue;
    p.target->errors++;
    p.target->broken = true;  // the stream is out of step now; stop using it
    if (!p.done) {
      fprintf(stderr, "%s: no complete reply within %d ms\n", p.target->name.c_str(), kReplyTimeoutMs);
    } else {
      fprintf(stderr, "%s: unexpected reply: %.80s\n", p.target->name.c_str(), p.reply.c_str());
    }
  }
}

// Nearest-rank percentile of sorted samples, in microseconds.
double percentile_us(const std::vector<int64_t>& sorted, double pct) {
  if (sorted.empty()) return 0.0;
  size_t rank = size_t(pct / 100.0 * double(sorted.size()) + 0.999999);
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return double(sorted[rank - 1]) / 1000.0;
}

void usage() {
  fprintf(stderr,
          "usage: latency_sampler --op get|set|mget --duration-s S --interval-us U "
          "--target NAME=HOST:PORT [--target ...]\n");
  exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string op = "get";
  double duration_s = 8.0;
  int64_t interval_us = 1000;
  std::vector<Target> targets;

  for (int i = 1; i < argc; i++) {
    std::string arg = argv[i];
    if (i + 1 >= argc) usage();
    std::string val = argv[++i];
    if (arg == "--op") {
      op = val;
    } else if (arg == "--duration-s") {
      duration_s = atof(val.c_str());
    } else if (arg == "--interval-us") {
      interval_us = atoll(val.c_str());
    } else if (arg == "--target") {
      size_t eq = val.find('='), colon = val.rfind(':');
      if (eq == std::string::npos || colon == std::string::npos || colon < eq) usage();
      Target t;
      t.name = val.substr(0, eq);
      t.host = val.substr(eq + 1, colon - eq - 1);
      t.port = atoi(val.c_str() + colon + 1);
      targets.push_back(t);
    } else {
      usage();
    }
  }
  if (targets.empty() || (op != "get" && op != "set" && op != "mget") || interval_us <= 0 || duration_s <= 0) usage();

  for (Target& t : targets) {
    if (!connect_target(&t) || !preload(&t)) {
      fprintf(stderr, "%s: cannot connect to or preload %s:%d\n", t.name.c_str(), t.host.c_str(), t.port);
      t.broken = true;
    }
  }

  const Exchange ex = make_exchange(op);
  const int64_t interval_ns = interval_us * 1000;
  const int64_t end = now_ns() + int64_t(duration_s * 1e9);
  int64_t next_tick = now_ns();
  uint64_t tick = 0;
  // Bounded by time: the loop ends at `end` whatever the servers do (each
  // sample itself is bounded by kReplyTimeoutMs).
  while (now_ns() < end) {
    std::vector<Target*> order;
    for (Target& t : targets) order.push_back(&t);
    if (tick % 2 == 1) std::reverse(order.begin(), order.end());  // alternate who is sent first
    sample_tick(order, ex);
    tick++;
    next_tick += interval_ns;
    int64_t now = now_ns();
    if (next_tick < now) next_tick = now;  // fell behind: do not burst to catch up
    timespec ts{time_t(next_tick / 1000000000), long(next_tick % 1000000000)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
  }

  bool all_ok = true;
  for (Target& t : targets) {
    std::sort(t.samples_ns.begin(), t.samples_ns.end());
    double sum = 0;
    for (int64_t s : t.samples_ns) sum += double(s);
    double mean_us = t.samples_ns.empty() ? 0.0 : sum / double(t.samples_ns.size()) / 1000.0;
    double max_us = t.samples_ns.empty() ? 0.0 : double(t.samples_ns.back()) / 1000.0;
    printf("%s samples=%zu errors=%llu p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f mean_us=%.1f\n",
           t.name.c_str(), t.samples_ns.size(), static_cast<unsigned long long>(t.errors),
           percentile_us(t.samples_ns, 50), percentile_us(t.samples_ns, 90), percentile_us(t.samples_ns, 99),
           percentile_us(t.samples_ns, 99.9), max_us, mean_us);
    if (t.errors) all_ok = false;
    if (t.fd >= 0) close(t.fd);
  }
  return all_ok ? 0 : 1;
}
