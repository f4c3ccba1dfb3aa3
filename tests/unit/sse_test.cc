// Tests of the server-sent events framing: what the daemon writes reads back the same through
// the parser, whatever the pieces it arrives in; the standard's line endings, comments, default
// event name, multi-line data and a line too long to buffer.
#include "base/sse.h"

#include <gtest/gtest.h>

#include <vector>

#include "base/error.h"

namespace kdom {
namespace {

std::vector<SseMessage> parse_in_pieces(const std::string& stream, size_t piece) {
  SseParser parser;
  std::vector<SseMessage> messages;
  for (size_t at = 0; at < stream.size(); at += piece)
    parser.feed(std::string_view(stream).substr(at, piece), [&](const SseMessage& m) { messages.push_back(m); });
  return messages;
}

TEST(Sse, MessageFraming) {
  EXPECT_EQ(sse_message("paused", R"({"id":3})", 7), "id: 7\nevent: paused\ndata: {\"id\":3}\n\n");
  EXPECT_EQ(sse_message("", "two\nlines"), "data: two\ndata: lines\n\n");
  EXPECT_EQ(sse_message("a\nb", "x\r\ny"), "event: a b\ndata: x\ndata: y\n\n");
  EXPECT_EQ(sse_comment("keep-alive"), ": keep-alive\n");
}

TEST(Sse, WhatIsWrittenReadsBackInPiecesOfAnySize) {
  const std::string stream = sse_comment("hello") + sse_message("created", R"({"seq":1})", 1) +
                             sse_message("renamed", "line one\nline two", 2) + sse_comment("keep-alive") +
                             sse_message("", "plain");
  for (size_t piece : {1u, 2u, 3u, 7u, 1000u}) {
    const auto messages = parse_in_pieces(stream, piece);
    ASSERT_EQ(messages.size(), 3u) << "piece " << piece;
    EXPECT_EQ(messages[0].event, "created");
    EXPECT_EQ(messages[0].data, R"({"seq":1})");
    EXPECT_EQ(messages[0].id, "1");
    EXPECT_EQ(messages[1].event, "renamed");
    EXPECT_EQ(messages[1].data, "line one\nline two");
    EXPECT_EQ(messages[2].event, "message");
    EXPECT_EQ(messages[2].id, "2") << "the last id stays until another comes";
  }
}

TEST(Sse, CrCrLfAndLfEndLinesAndACrLfSplitAcrossPiecesIsOneEnd) {
  const std::string stream = "event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\rdata:3\n\n";
  for (size_t piece : {1u, 2u, 5u, 100u}) {
    const auto messages = parse_in_pieces(stream, piece);
    ASSERT_EQ(messages.size(), 3u) << "piece " << piece;
    EXPECT_EQ(messages[0].event, "a");
    EXPECT_EQ(messages[0].data, "1");
    EXPECT_EQ(messages[1].event, "b");
    EXPECT_EQ(messages[1].data, "2");
    EXPECT_EQ(messages[2].data, "3") << "no space after the colon";
  }
}

TEST(Sse, ABlankLineWithoutDataAndUnknownFieldsSendNothing) {
  EXPECT_TRUE(parse_in_pieces("event: x\n\nretry: 5\nbogus\n\n", 4).empty());
}

TEST(Sse, AnEndlessLineIsRefused) {
  SseParser parser;
  const std::string piece(64 * 1024, 'x');
  EXPECT_THROW(
      {
        for (size_t fed = 0; fed <= SseParser::kMaxLineBytes; fed += piece.size())
          parser.feed(piece, [](const SseMessage&) {});
      },
      Error);
}

}  // namespace
}  // namespace kdom
