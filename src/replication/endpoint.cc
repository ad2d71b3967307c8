#include "replication/endpoint.h"

namespace memkeep::replication {

bool parse_endpoint(std::string_view text, Endpoint* out) {
    Endpoint endpoint;
    size_t colon = text.rfind(':');
    std::string_view host = text.substr(0, colon);
    if (colon != std::string_view::npos) {
        std::string_view port = text.substr(colon + 1);
        if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos) return false;
        int number = std::stoi(std::string(port));
        if (number < 1 || number > 65535) return false;
        endpoint.port = static_cast<uint16_t>(number);
    }
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (host.empty()) return false;
    endpoint.host = std::string(host);
    *out = endpoint;
    return true;
}

}  // namespace memkeep::replication
