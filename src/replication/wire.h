#pragma once
// The replication protocol: how two nodes talk on a replication port.
//
// Every message is a frame: a 1-byte type, a 4-byte little-endian payload
// length, then the payload. A connection goes:
//
//   upstream (has the data)             downstream (pulls it)
//   HELLO  version, node id, run id, nonce  ->
//                                       <-  JOIN  version, node id, role, nonce,
//                                                 proof, where it stopped (run id, offset)
//   WELCOME  full|continue, run id, offset, proof  ->
//   [SNAPSHOT_BEGIN, SNAPSHOT_RECORDS..., SNAPSHOT_END offset]   (full sync only)
//   RECORDS end-offset, mutations...  ->    (forever; PING when idle)
//                                       <-  ACK applied offset  (after each RECORDS, and each PING)
//
// Either side may send REFUSE with a reason and close. The proofs are
// HMAC-SHA256 under the shared secret of both nonces, the role and, with
// --repl-tls (TLS 1.3 before HELLO), the TLS exporter (see auth.h): the
// secret itself never crosses the wire.
//
// Offsets are byte positions in the upstream's replication log (backlog.h);
// a run id names one run of the upstream process, so a downstream that comes
// back with (run id, offset) can be given only what it missed (partial sync)
// if that run is still going and the log still holds that offset.

#include <cstdint>
#include <string>
#include <string_view>

#include "engine/mutation.h"

namespace memkeep::replication {

// 2: proofs cover both nonces, the role and the TLS exporter (auth.h).
inline constexpr uint16_t kProtocolVersion = 2;
inline constexpr std::string_view kMagic = "MKREPL";
inline constexpr size_t kNonceSize = 32;
inline constexpr size_t kProofSize = 32;
inline constexpr size_t kFrameHeaderSize = 5;
inline constexpr uint32_t kMaxFramePayload = 64u << 20;
// Until the secret is proved (HELLO, JOIN, WELCOME, REFUSE are each well
// under 200 bytes): frames of at most this size, and the whole handshake
// within this time; an unauthenticated node gets no more of this node's
// memory or time than that.
inline constexpr uint32_t kMaxHandshakePayload = 4096;
inline constexpr int kHandshakeDeadlineMs = 5000;

enum class FrameType : uint8_t {
    kHello = 1,
    kJoin = 2,
    kWelcome = 3,
    kRefuse = 4,
    kRecords = 5,
    kSnapshotBegin = 6,
    kSnapshotEnd = 7,
    kPing = 8,
    kAck = 9,
    kSnapshotRecords = 10,
};

enum class Role : uint8_t { kPeer = 1, kReplica = 2 };
enum class SyncMode : uint8_t { kFull = 1, kContinue = 2 };

struct Hello {
    uint16_t version = kProtocolVersion;
    uint64_t node_id = 0;
    uint64_t run_id = 0;
    bool secret_required = false;
    std::string nonce;   // kNonceSize bytes
};

struct Join {
    uint16_t version = kProtocolVersion;
    uint64_t node_id = 0;
    Role role = Role::kPeer;
    uint64_t resume_run_id = 0;   // 0: nothing to resume
    uint64_t resume_offset = 0;
    std::string nonce;   // kNonceSize bytes
    std::string proof;   // kProofSize bytes (zeros without a secret)
};

struct Welcome {
    SyncMode mode = SyncMode::kFull;
    uint64_t run_id = 0;
    uint64_t offset = 0;   // where the stream of RECORDS starts
    std::string proof;
};

// ---- Little-endian helpers ---------------------------------------------------------

void put_u16(std::string& out, uint16_t value);
void put_u32(std::string& out, uint32_t value);
void put_u64(std::string& out, uint64_t value);

// Reads fixed-size fields from a payload; any read past the end sets failed().
class Reader {
public:
    explicit Reader(std::string_view data) : data_(data) {}
    uint8_t u8();
    uint16_t u16();
    uint32_t u32();
    uint64_t u64();
    std::string_view bytes(size_t n);
    std::string_view rest();
    bool failed() const { return failed_; }
    bool at_end() const { return position_ == data_.size(); }

private:
    std::string_view data_;
    size_t position_ = 0;
    bool failed_ = false;
};

// ---- Frames --------------------------------------------------------------------------

// Appends a frame header for a payload of `length` bytes.
void begin_frame(std::string& out, FrameType type, uint32_t length);
std::string frame(FrameType type, std::string_view payload);

std::string encode_hello(const Hello& hello);
bool decode_hello(std::string_view payload, Hello* out);
std::string encode_join(const Join& join);
bool decode_join(std::string_view payload, Join* out);
std::string encode_welcome(const Welcome& welcome);
bool decode_welcome(std::string_view payload, Welcome* out);

// ---- Mutations -----------------------------------------------------------------------
// A mutation as the log holds it and RECORDS carry it: a 4-byte length, then
// kind, origin, origin tag, version, flags, exptime, state, flush time, key
// length, key, value.

inline constexpr size_t kMutationFixedSize = 1 + 8 + 2 + 8 + 4 + 4 + 1 + 8 + 1;

size_t encoded_size(const engine::Mutation& mutation);
void encode_mutation(const engine::Mutation& mutation, std::string& out);
// The length prefix and fixed fields of a mutation's encoding (what comes
// before its key and value), into `out` (kMutationHeaderSize bytes).
inline constexpr size_t kMutationHeaderSize = 4 + kMutationFixedSize;
void encode_mutation_header(const engine::Mutation& mutation, char* out);
// Decodes one length-prefixed mutation at the start of `data`; returns the
// bytes it took (0 on malformed input). The mutation's key and value point
// into `data`.
size_t decode_mutation(std::string_view data, engine::Mutation* out);
// The origin node id of the length-prefixed mutation at `data` (no checks).
uint64_t mutation_origin(const char* data);

}  // namespace memkeep::replication
