#include "server/sasl_cyrus.h"

#include <sasl/sasl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "server/log.h"

namespace memkeep::server {

namespace {

int g_verbosity = 0;
std::string g_password_file;   // MEMCACHED_SASL_PWDB
std::string g_conf_path;       // the directory Cyrus reads memcached.conf from

// SASL_CB_SERVER_USERDB_CHECKPASS: the password file, as memcached reads it.
int check_password(sasl_conn_t*, void*, const char* user, const char* pass, unsigned pass_length,
                   struct propctx*) {
    std::ifstream file(g_password_file);
    if (!file) {
        if (g_verbosity > 0) log_line("WARNING: failed to open the SASL password file " + g_password_file);
        return SASL_NOAUTHZ;
    }
    std::string_view wanted_user(user);
    std::string_view given(pass, pass_length);
    std::string line;
    while (std::getline(file, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.size() <= wanted_user.size() || line.compare(0, wanted_user.size(), wanted_user) != 0 ||
            line[wanted_user.size()] != ':') {
            continue;
        }
        std::string_view stored = std::string_view(line).substr(wanted_user.size() + 1);
        stored = stored.substr(0, stored.find(':'));   // further fields are not part of the password
        if (stored == given) return SASL_OK;
        break;
    }
    if (g_verbosity > 0) log_line(std::string("INFO: user <") + user + "> failed to authenticate");
    return SASL_NOAUTHZ;
}

int get_conf_path(void*, char** path) {
    *path = const_cast<char*>(g_conf_path.c_str());
    return SASL_OK;
}

// With a password file and no mech_list configured, offer PLAIN only: the
// other mechanisms need secrets the file cannot give.
int get_option(void*, const char*, const char* option, const char** result, unsigned* length) {
    if (!g_password_file.empty() && std::strcmp(option, "mech_list") == 0) {
        *result = "PLAIN";
        if (length) *length = 5;
        return SASL_OK;
    }
    return SASL_FAIL;
}

int log_message(void*, int level, const char* message) {
    int needed = (level == SASL_LOG_WARN || level == SASL_LOG_FAIL) ? 1 : level == SASL_LOG_ERR ? 0 : 2;
    if (level != SASL_LOG_NONE && g_verbosity >= needed) {
        log_line("SASL (severity " + std::to_string(level) + "): " + message);
    }
    return SASL_OK;
}

class CyrusSession : public protocol::SaslSession {
public:
    explicit CyrusSession(sasl_conn_t* conn) : conn_(conn) {}
    ~CyrusSession() override { sasl_dispose(&conn_); }

    bool list_mechanisms(std::string* out) override {
        const char* list = nullptr;
        unsigned length = 0;
        if (sasl_listmech(conn_, nullptr, "", " ", "", &list, &length, nullptr) != SASL_OK) return false;
        out->assign(list, length);
        return true;
    }

    Result start(std::string_view mechanism, std::string_view data, std::string* challenge) override {
        std::string name(mechanism);
        const char* reply = nullptr;
        unsigned reply_length = 0;
        int rc = sasl_server_start(conn_, name.c_str(), data.empty() ? nullptr : data.data(),
                                   static_cast<unsigned>(data.size()), &reply, &reply_length);
        return finish(rc, reply, reply_length, challenge);
    }

    Result step(std::string_view data, std::string* challenge) override {
        const char* reply = nullptr;
        unsigned reply_length = 0;
        int rc = sasl_server_step(conn_, data.empty() ? nullptr : data.data(), static_cast<unsigned>(data.size()),
                                  &reply, &reply_length);
        return finish(rc, reply, reply_length, challenge);
    }

private:
    static Result finish(int rc, const char* reply, unsigned reply_length, std::string* challenge) {
        if (rc == SASL_OK) return Result::kOk;
        if (rc == SASL_CONTINUE) {
            if (reply) challenge->assign(reply, reply_length);
            return Result::kContinue;
        }
        return Result::kFailed;
    }

    sasl_conn_t* conn_;
};

class CyrusProvider : public protocol::SaslProvider {
public:
    std::unique_ptr<protocol::SaslSession> new_session() override {
        sasl_conn_t* conn = nullptr;
        if (sasl_server_new("memcached", nullptr, nullptr, nullptr, nullptr, nullptr, 0, &conn) != SASL_OK) {
            if (g_verbosity > 0) log_line("failed to initialize a SASL connection");
            return nullptr;
        }
        return std::make_unique<CyrusSession>(conn);
    }
};

sasl_callback_t g_callbacks[5];

// Cyrus stores every callback as int (*)(); going through void (*)() is the
// cast the compiler accepts as deliberate.
template <typename Function>
int (*callback(Function* function))() {
    return reinterpret_cast<int (*)()>(reinterpret_cast<void (*)()>(function));
}

}  // namespace

std::unique_ptr<protocol::SaslProvider> make_cyrus_sasl(int verbosity, std::string* error) {
    g_verbosity = verbosity;
    if (const char* file = std::getenv("MEMCACHED_SASL_PWDB")) g_password_file = file;
    if (const char* path = std::getenv("SASL_CONF_PATH")) {
        g_conf_path = path;
        // memcached's documentation names the file; Cyrus wants its directory.
        if (g_conf_path.size() > 5 && g_conf_path.ends_with(".conf")) {
            size_t slash = g_conf_path.rfind('/');
            g_conf_path = slash == std::string::npos ? "." : g_conf_path.substr(0, slash);
        }
    } else {
        for (const char* dir : {"/etc/sasl", "/etc/sasl2"}) {
            if (::access((std::string(dir) + "/memcached.conf").c_str(), F_OK) == 0) {
                g_conf_path = dir;
                break;
            }
        }
    }
    int n = 0;
    if (!g_password_file.empty()) {
        g_callbacks[n++] = {SASL_CB_SERVER_USERDB_CHECKPASS, callback(&check_password), nullptr};
        g_callbacks[n++] = {SASL_CB_GETOPT, callback(&get_option), nullptr};
    }
    g_callbacks[n++] = {SASL_CB_LOG, callback(&log_message), nullptr};
    if (!g_conf_path.empty()) g_callbacks[n++] = {SASL_CB_GETCONFPATH, callback(&get_conf_path), nullptr};
    g_callbacks[n++] = {SASL_CB_LIST_END, nullptr, nullptr};
    if (g_password_file.empty() && g_conf_path.empty() && verbosity > 0) {
        log_line("INFO: MEMCACHED_SASL_PWDB not set and no memcached.conf found: SASL uses Cyrus' defaults");
    }
    int rc = sasl_server_init(g_callbacks, "memcached");
    if (rc != SASL_OK) {
        *error = std::string("error initializing SASL: ") + sasl_errstring(rc, nullptr, nullptr);
        return nullptr;
    }
    if (verbosity > 0) log_line("Initialized SASL.");
    return std::make_unique<CyrusProvider>();
}

}  // namespace memkeep::server
