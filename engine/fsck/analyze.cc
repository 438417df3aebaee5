#include <algorithm>
#include <cstring>

#include "fsck/shard_fsck.h"
#include "index/codec.h"
#include "index/replay.h"

namespace spool::fsck {

using internal::IndexEntry;

ShardFsck::LocState ShardFsck::CheckLocation(const log::Location& loc, const log::RecordId& id,
                                             log::RecordType type) const {
  auto it = records_.find({loc.segment, loc.offset});
  if (it != records_.end() && it->second.id == id && it->second.type == type &&
      it->second.size == loc.size) {
    return LocState::kIntact;
  }
  if (live_segments_.count(loc.segment) == 0) return LocState::kMissingSegment;
  for (const Range& r : damage_) {
    if (r.segment == loc.segment && loc.offset + loc.size > r.begin && loc.offset < r.end) {
      return LocState::kDamaged;
    }
  }
  for (const Range& r : known_) {
    if (r.segment == loc.segment && loc.offset + loc.size > r.begin && loc.offset < r.end) {
      return LocState::kDamaged;
    }
  }
  if (auto s = seg_size_.find(loc.segment);
      s != seg_size_.end() && loc.offset + loc.size > s->second) {
    return LocState::kDamaged;  // past the end of a truncated file
  }
  if (torn_at_ && loc.segment == newest_segment_ && loc.offset + loc.size > *torn_at_) {
    return LocState::kDamaged;  // indexed, so acknowledged: not a torn tail after all
  }
  return LocState::kNothing;
}

ShardFsck::LocState ShardFsck::CheckBody(const IndexEntry& e) const {
  const log::RecordId rid{e.info.id.time(), e.info.id.tag()};
  LocState worst = CheckLocation(
      e.main, rid, e.chunked() ? log::RecordType::kCommit : log::RecordType::kMessage);
  // A streamed message's commit record may also be a whole message record when it was
  // written inline; chunks decide.
  if (worst != LocState::kIntact) return worst;
  for (const log::Location& c : e.chunks) {
    LocState s = CheckLocation(c, rid, log::RecordType::kBodyChunk);
    if (s != LocState::kIntact) return s;
  }
  return LocState::kIntact;
}

void ShardFsck::AnalyzeDamage() {
  torn_at_.reset();
  damage_.clear();
  for (const log::Damage& d : recovery_.damage) {
    Range r{d.segment, d.offset, 0};
    if (d.segment != 0) {
      auto it = seg_size_.find(d.segment);
      r.end = it == seg_size_.end() ? d.offset + log::kBlockSize : it->second;
      auto offs = offsets_.find(d.segment);
      if (offs != offsets_.end()) {
        auto next = std::upper_bound(offs->second.begin(), offs->second.end(), d.offset);
        if (next != offs->second.end()) r.end = *next;
      }
      damage_.push_back(r);
    }
    if (d.id.hi != 0 || d.id.lo != 0) damage_ids_[{d.segment, d.offset}] = d.id;
    bool known = false;
    for (const Range& k : known_) {
      known |= k.segment == r.segment && d.offset >= k.begin && d.offset < k.end;
    }
    std::string id;
    if (d.id.hi != 0 || d.id.lo != 0) id = MessageId(d.id.hi, d.id.lo).ToString();
    if (known) {
      Add("known_damage", Severity::kNote, d.segment, d.offset, id,
          d.detail + " (dealt with by an earlier repair)");
      continue;
    }
    damage_problems_.push_back(Add(d.kind, Severity::kError, d.segment, d.offset, id,
                                   d.detail.empty() ? d.kind : d.detail));
  }
  // What a truncated file lost, from the end of its last intact record before the cut.
  for (const auto& [seq, size] : truncated_) {
    uint64_t begin = log::kSegmentDataStart;
    auto offs = offsets_.find(seq);
    if (offs != offsets_.end()) {
      for (uint64_t off : offs->second) {
        const uint64_t end = off + records_.at({seq, off}).size;
        if (end <= size) begin = std::max(begin, end);
      }
    }
    damage_.push_back({seq, begin, std::max(size, marker_.segment_size)});
  }
  if (recovery_.torn_tail_bytes > 0 && newest_segment_ != 0) {
    // The log reports how many bytes, not where: the tear starts after the newest
    // segment's last intact record (at the next block, where a batch ended).
    uint64_t last = log::kSegmentDataStart;
    auto offs = offsets_.find(newest_segment_);
    if (offs != offsets_.end() && !offs->second.empty()) {
      const uint64_t off = offs->second.back();
      last = off + records_.at({newest_segment_, off}).size;
    }
    torn_at_ = last;
    torn_problem_ = Add("torn_tail", held_by_other_ ? Severity::kWarning : Severity::kError,
                        newest_segment_, last, "",
                        std::to_string(recovery_.torn_tail_bytes) +
                            " bytes of an unacknowledged write cut short at the end of the log" +
                            (held_by_other_ ? " (or the writer's batch in flight)" : ""));
  }
}

IndexEntry ShardFsck::QuarantineEntry(const MessageId& id, const IndexEntry* indexed,
                                      const IndexEntry* replayed,
                                      const log::Location* damaged) const {
  IndexEntry e;
  if (indexed != nullptr) {
    e = *indexed;
  } else if (replayed != nullptr) {
    e = *replayed;
  } else if (damaged != nullptr) {
    // Salvage the envelope from the damaged record: its header is intact (we know the
    // id), the payload failed its checksum, so decode what decodes.
    e.main = *damaged;
    auto path = seg_path_.find(damaged->segment);
    if (path != seg_path_.end()) {
      StatusOr<std::unique_ptr<io::File>> f =
          fs_->Open(path->second, io::OpenOptions{.read_only = true});
      std::string buf(damaged->size, '\0');
      size_t got = 0;
      if (f.ok() &&
          fs_->Read(**f, damaged->offset, {reinterpret_cast<std::byte*>(buf.data()), buf.size()},
                    &got)
              .ok() &&
          got > sizeof(log::RecordHeader)) {
        log::RecordHeader h;
        std::memcpy(&h, buf.data(), sizeof(h));
        std::string_view payload(buf.data() + sizeof(h),
                                 std::min<size_t>(h.payload_size, got - sizeof(h)));
        const size_t whole = payload.size();
        MessageInfo info;
        Status s = h.type == static_cast<uint8_t>(log::RecordType::kCommit)
                       ? internal::DecodeCommit(payload, &info, &e.chunks)
                       : internal::DecodeEnvelope(&payload, &info);
        if (s.ok()) {
          e.info = info;
          if (h.type == static_cast<uint8_t>(log::RecordType::kMessage)) {
            e.body_offset = static_cast<uint32_t>(whole - payload.size());
          }
        } else {
          e.chunks.clear();
        }
      }
    }
    if (e.info.arrival_ms == 0) e.info.arrival_ms = static_cast<int64_t>(id.micros() / 1000);
    e.info.recipient_status.assign(e.info.envelope.recipients.size(), RecipientStatus::kPending);
    e.info.next_attempt_ms = e.info.arrival_ms;
  }
  e.info.id = id;
  e.info.state = MessageState::kCorrupt;
  return e;
}

void ShardFsck::AddQuarantine(IndexEntry entry, std::optional<IndexEntry> old, size_t problem) {
  quarantined_keys_.insert(internal::IdKey(entry.info.id));
  fixes_.push_back({Fix::Kind::kQuarantine, std::move(entry), std::move(old), problem});
}

void ShardFsck::AnalyzeIndex() {
  fixes_.clear();
  quarantined_keys_.clear();
  checkpoint_problem_.reset();
  missing_problems_.clear();
  if (checkpoint_.segment != 0 && live_segments_.count(checkpoint_.segment) == 0) {
    checkpoint_problem_ =
        Add("missing_segment", Severity::kError, checkpoint_.segment, std::nullopt, "",
            "segment " + std::to_string(checkpoint_.segment) +
                ", where the index checkpoint lies, is missing");
  }
  std::set<uint64_t> missing_reported;
  auto note_missing = [&](const log::Location& loc) {
    if (live_segments_.count(loc.segment) != 0 || !missing_reported.insert(loc.segment).second) {
      return;
    }
    if (checkpoint_problem_ && report_->problems[*checkpoint_problem_].segment == loc.segment) {
      return;
    }
    missing_problems_.push_back(Add("missing_segment", Severity::kError, loc.segment, std::nullopt,
                                    "",
                                    "segment " + std::to_string(loc.segment) +
                                        " holds records the index refers to, and is missing"));
  };

  std::set<std::string> keys;
  for (const auto& [k, e] : indexed_) keys.insert(k);
  for (const auto& [k, e] : model_.live) keys.insert(k);
  for (const std::string& key : keys) {
    const MessageId id = internal::IdFromKey(key);
    const std::string id_text = id.ToString();
    auto ii = indexed_.find(key);
    auto ei = model_.live.find(key);
    const IndexEntry* I = ii == indexed_.end() ? nullptr : &ii->second;
    const IndexEntry* E = ei == model_.live.end() ? nullptr : &ei->second;
    const auto touch = model_.last_touch.find(key);
    const bool after_cp = !index_readable_ ||
                          (touch != model_.last_touch.end() && !Before(touch->second, checkpoint_));

    if (I != nullptr && I->info.state == MessageState::kCorrupt) {
      Add("quarantined", Severity::kNote, I->main.segment, I->main.offset, id_text,
          "message " + id_text + " is quarantined (state corrupt)");
      continue;
    }
    const LocState istate = I ? CheckBody(*I) : LocState::kNothing;
    const LocState estate = E ? CheckBody(*E) : LocState::kNothing;
    if (I != nullptr && istate == LocState::kMissingSegment) note_missing(I->main);
    for (const IndexEntry* x : {I, E}) {
      if (x == nullptr) continue;
      for (const log::Location& c : x->chunks) note_missing(c);
    }
    const bool iwhole = I != nullptr && istate == LocState::kIntact;
    if (iwhole) {
      // The body is intact. A damaged state record is the only record the index can be
      // better than the log about: keep the index's state then.
      const bool state_ok = I->state.segment == 0 ||
                            CheckLocation(I->state, {id.time(), id.tag()},
                                          log::RecordType::kStateUpdate) == LocState::kIntact;
      if (!state_ok && CheckLocation(I->state, {id.time(), id.tag()},
                                     log::RecordType::kStateUpdate) != LocState::kNothing) {
        continue;
      }
      if (E != nullptr && internal::EncodeIndexEntry(*E) == internal::EncodeIndexEntry(*I)) {
        continue;
      }
      if (E == nullptr && model_.removed.count(key) == 0) {
        // Intact records the replay did not make live and no removal: cannot happen
        // unless the index names records of the wrong type.
        Add("index_mismatch", Severity::kWarning, I->main.segment, I->main.offset, id_text,
            "index entry of " + id_text + " does not match the log; left alone");
        continue;
      }
      if (E != nullptr && estate != LocState::kIntact) continue;  // the index has the good copy
      const bool pending = after_cp;
      const size_t p = Add(
          E ? "index_mismatch" : "removed_still_indexed",
          pending ? Severity::kNote : Severity::kError, I->main.segment, I->main.offset, id_text,
          pending ? "the log has newer changes of " + id_text + " than the index (replayed at open)"
          : E     ? "the index entry of " + id_text + " differs from the log"
                  : "message " + id_text + " was removed in the log but is still indexed");
      fixes_.push_back({E ? Fix::Kind::kPut : Fix::Kind::kDelete, E ? *E : *I, *I, p});
      continue;
    }
    if (I == nullptr) {
      if (E == nullptr) continue;
      if (estate == LocState::kIntact) {
        const size_t p =
            Add("unindexed", after_cp ? Severity::kNote : Severity::kError, E->main.segment,
                E->main.offset, id_text,
                after_cp ? "message " + id_text +
                               " is in the log after the index checkpoint "
                               "(replayed at open)"
                         : "message " + id_text + " is in the log but not in the index");
        fixes_.push_back({Fix::Kind::kPut, *E, std::nullopt, p});
      } else {
        const size_t p =
            Add("corrupt_message", Severity::kError, E->main.segment, E->main.offset, id_text,
                "a record of the body of " + id_text + " is damaged or missing");
        AddQuarantine(QuarantineEntry(id, nullptr, E, nullptr), std::nullopt, p);
      }
      continue;
    }
    // The index names records that are not intact.
    if (E != nullptr && estate == LocState::kIntact) {
      const size_t p = Add("index_mismatch", after_cp ? Severity::kNote : Severity::kError,
                           I->main.segment, I->main.offset, id_text,
                           "the index points " + id_text +
                               " at records that are not there; the "
                               "log has it at " +
                               LocText(E->main.segment, E->main.offset));
      fixes_.push_back({Fix::Kind::kPut, *E, *I, p});
      continue;
    }
    if (istate == LocState::kNothing && (E == nullptr || estate == LocState::kNothing)) {
      const size_t p =
          Add("dangling_entry", Severity::kError, I->main.segment, I->main.offset, id_text,
              "index entry of " + id_text + " points at " +
                  LocText(I->main.segment, I->main.offset) + ", where no record of it is");
      fixes_.push_back({Fix::Kind::kDelete, *I, *I, p});
      continue;
    }
    const size_t p =
        Add("corrupt_message", Severity::kError, I->main.segment, I->main.offset, id_text,
            istate == LocState::kMissingSegment
                ? "message " + id_text + " has records in a missing segment"
                : "message " + id_text + " has damaged records");
    AddQuarantine(QuarantineEntry(id, I, E, nullptr), *I, p);
  }

  // Damaged message records that neither the index nor the replay knows (written after the
  // checkpoint, say): quarantine them with what their envelope still tells.
  for (const auto& [where, rid] : damage_ids_) {
    const MessageId id(rid.hi, rid.lo);
    const std::string key = internal::IdKey(id);
    if (indexed_.count(key) != 0 || model_.live.count(key) != 0 || model_.removed.count(key) != 0 ||
        quarantined_keys_.count(key) != 0 || !id.valid()) {
      continue;
    }
    // Only records of a message (or commit) stand for a message; read the header's type.
    auto path = seg_path_.find(where.first);
    if (path == seg_path_.end()) continue;
    StatusOr<std::unique_ptr<io::File>> f = fs_->Open(path->second, {.read_only = true});
    log::RecordHeader h{};
    size_t got = 0;
    if (!f.ok() ||
        !fs_->Read(**f, where.second, {reinterpret_cast<std::byte*>(&h), sizeof(h)}, &got).ok() ||
        got < sizeof(h) ||
        (h.type != static_cast<uint8_t>(log::RecordType::kMessage) &&
         h.type != static_cast<uint8_t>(log::RecordType::kCommit))) {
      continue;
    }
    bool known = false;
    for (const Range& k : known_) {
      known |= k.segment == where.first && where.second >= k.begin && where.second < k.end;
    }
    if (known) continue;
    const log::Location loc{where.first, where.second,
                            static_cast<uint32_t>(log::RecordFootprint(h.payload_size))};
    const size_t p = Add(
        "corrupt_message", Severity::kError, loc.segment, loc.offset, id.ToString(),
        "the record of message " + id.ToString() + " is damaged and the index does not know it");
    AddQuarantine(QuarantineEntry(id, nullptr, nullptr, &loc), std::nullopt, p);
  }
}

}  // namespace spool::fsck
