// Metrics: one family at a time (HELP, TYPE, then every domain's series), as the text format
// wants each family's samples together.
#include "toolstack/metrics.h"

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

namespace kdom::toolstack {

using nlohmann::json;

namespace {

// The shortest text that reads back as `value` ("1e-05", not "1.0000000000000001e-05").
std::string number(double value) {
  char text[64];
  for (int precision = 6; precision <= 17; ++precision) {
    std::snprintf(text, sizeof(text), "%.*g", precision, value);
    if (std::strtod(text, nullptr) == value) break;
  }
  return text;
}

std::string number_of(const json& object, const char* key) {
  const auto it = object.find(key);
  if (it == object.end() || !it->is_number()) return "0";
  return it->is_number_float() ? number(it->get<double>()) : std::to_string(it->get<uint64_t>());
}

class Writer {
 public:
  // A family: its samples come from `each`, which calls sample() for every series.
  void family(const std::string& name, const std::string& type, const std::string& help,
              const std::function<void()>& each) {
    out_ += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    name_ = name;
    each();
  }
  void sample(const std::string& labels, const std::string& value, const std::string& suffix = "") {
    out_ += name_ + suffix + (labels.empty() ? "" : "{" + labels + "}") + " " + value + "\n";
  }
  std::string text() && { return std::move(out_); }

 private:
  std::string out_, name_;
};

std::string label(const std::string& name, const std::string& value) {
  return name + "=\"" + prometheus_label_value(value) + "\"";
}

std::string domain_labels(const json& domain) {
  return label("domain", domain.value("name", "")) + "," + label("id", std::to_string(domain.value("id", 0u)));
}

const json& list_of(const json& domain, const char* key) {
  static const json empty = json::array();
  const auto it = domain.find(key);
  return it != domain.end() && it->is_array() ? *it : empty;
}

struct Counter {
  const char* name;
  const char* key;
  const char* help;
};

// One counter family per entry of `counters`, a series for each device in each domain's
// `list` ("disks", "nets"), labelled with the device's id.
template <size_t N>
void device_counters(Writer& w, const json& domains, const char* list, const Counter (&counters)[N]) {
  for (const Counter& counter : counters)
    w.family(counter.name, "counter", counter.help, [&] {
      for (const json& d : domains)
        for (const json& device : list_of(d, list))
          w.sample(domain_labels(d) + "," + label("device", device.value("id", "")), number_of(device, counter.key));
    });
}

}  // namespace

std::string prometheus_label_value(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string prometheus_metrics(const json& domains) {
  Writer w;
  w.family("kdom_domains", "gauge", "Domains kdomd manages.", [&] {
    w.sample("", std::to_string(domains.size()));
  });
  w.family("kdom_domain_info", "gauge", "One per domain, with its state as a label.", [&] {
    for (const json& d : domains) w.sample(domain_labels(d) + "," + label("state", d.value("state", "")), "1");
  });
  w.family("kdom_domain_cpu_seconds_total", "counter", "CPU time of the domain's VMM process (vCPUs and devices).", [&] {
    for (const json& d : domains) w.sample(domain_labels(d), number_of(d, "cpu_time_s"));
  });
  w.family("kdom_domain_memory_bytes", "gauge", "Memory the domain was given.", [&] {
    for (const json& d : domains) w.sample(domain_labels(d), std::to_string(d.value("memory_mib", uint64_t{0}) << 20));
  });
  w.family("kdom_domain_memory_actual_bytes", "gauge", "Memory the guest holds now (less its balloon).", [&] {
    for (const json& d : domains) w.sample(domain_labels(d), std::to_string(d.value("actual_mib", uint64_t{0}) << 20));
  });
  w.family("kdom_domain_resident_bytes", "gauge", "Resident memory of the domain's VMM process on the host.", [&] {
    for (const json& d : domains) w.sample(domain_labels(d), number_of(d, "resident_bytes"));
  });
  w.family("kdom_vcpu_cpu_seconds_total", "counter", "CPU time of each vCPU's thread.", [&] {
    for (const json& d : domains)
      for (const json& v : list_of(d, "vcpus"))
        w.sample(domain_labels(d) + "," + label("vcpu", std::to_string(v.value("vcpu", 0u))), number_of(v, "cpu_time_s"));
  });
  w.family("kdom_vcpu_exits_total", "counter", "Exits from the guest to the VMM, by reason.", [&] {
    for (const json& d : domains)
      for (const json& v : list_of(d, "vcpus")) {
        if (!v.contains("exits") || !v["exits"].is_object()) continue;
        for (const auto& [reason, count] : v["exits"].items())
          w.sample(domain_labels(d) + "," + label("vcpu", std::to_string(v.value("vcpu", 0u))) + "," + label("reason", reason),
                   count.is_number() ? std::to_string(count.get<uint64_t>()) : "0");
      }
  });
  const Counter disk_counters[] = {
      {"kdom_block_reads_total", "reads", "Read requests a disk completed."},
      {"kdom_block_writes_total", "writes", "Write requests a disk completed."},
      {"kdom_block_flushes_total", "flushes", "Flush requests a disk completed."},
      {"kdom_block_other_requests_total", "other_requests", "Other requests a disk answered (discard, write zeroes, get id)."},
      {"kdom_block_read_bytes_total", "read_bytes", "Bytes a disk read for the guest."},
      {"kdom_block_written_bytes_total", "write_bytes", "Bytes a disk wrote for the guest."},
      {"kdom_block_errors_total", "errors", "Requests a disk answered with an error."},
  };
  device_counters(w, domains, "disks", disk_counters);
  w.family("kdom_block_request_duration_seconds", "histogram",
           "Time from a read, write or flush leaving the queue to its completion.", [&] {
             for (const json& d : domains)
               for (const json& disk : list_of(d, "disks")) {
                 const std::string labels = domain_labels(d) + "," + label("device", disk.value("id", ""));
                 uint64_t cumulative = 0;
                 for (const json& bucket : list_of(disk, "latency_buckets")) {
                   cumulative += bucket.value("count", uint64_t{0});
                   const json& le = bucket["le_us"];
                   const std::string bound = le.is_number() ? number(static_cast<double>(le.get<uint64_t>()) / 1e6) : "+Inf";
                   w.sample(labels + "," + label("le", bound), std::to_string(cumulative), "_bucket");
                 }
                 if (list_of(disk, "latency_buckets").empty()) w.sample(labels + ",le=\"+Inf\"", "0", "_bucket");
                 w.sample(labels, number(static_cast<double>(disk.value("latency_sum_ns", uint64_t{0})) / 1e9), "_sum");
                 w.sample(labels, std::to_string(cumulative), "_count");
               }
           });
  const Counter net_counters[] = {
      {"kdom_net_receive_packets_total", "rx_packets", "Frames a NIC delivered to the guest."},
      {"kdom_net_receive_bytes_total", "rx_bytes", "Bytes a NIC delivered to the guest."},
      {"kdom_net_receive_dropped_total", "rx_dropped", "Frames for the guest a NIC dropped."},
      {"kdom_net_transmit_packets_total", "tx_packets", "Frames a NIC sent for the guest."},
      {"kdom_net_transmit_bytes_total", "tx_bytes", "Bytes a NIC sent for the guest."},
      {"kdom_net_transmit_dropped_total", "tx_dropped", "Frames from the guest a NIC dropped."},
  };
  device_counters(w, domains, "nets", net_counters);
  w.family("kdom_balloon_size_bytes", "gauge", "Memory a domain's balloon holds (taken from the guest).", [&] {
    for (const json& d : domains)
      if (d.contains("balloon") && d["balloon"].is_object())
        w.sample(domain_labels(d), std::to_string(d["balloon"].value("actual_mib", uint64_t{0}) << 20));
  });
  return std::move(w).text();
}

}  // namespace kdom::toolstack
