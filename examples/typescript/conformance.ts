// The TypeScript SDK's helpers through trio-router: a stream read with on("text") and
// finalMessage(), then a tool round trip (the first turn streamed, the second not). Prints one
// JSON line of what it saw, for tests/test_sdk_conformance.py to check on every provider format.
//
//   cd examples/typescript && npm ci
//   ANTHROPIC_BASE_URL=http://127.0.0.1:3456 ANTHROPIC_API_KEY=your-router-APIKEY npx tsx conformance.ts
//
// The tool is never run: its result is the fixed text in TOOL_RESULT.
import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({ maxRetries: 0 });
const model = process.env.MODEL ?? "claude-sonnet-4-5";
const toolResult = process.env.TOOL_RESULT ?? "done";
const tools: Anthropic.Tool[] = [
  {
    name: "Bash",
    description: "Runs a shell command and returns what it printed.",
    input_schema: {
      type: "object",
      properties: { command: { type: "string", description: "The command to run" } },
      required: ["command"],
    },
  },
];

function text(message: Anthropic.Message): string {
  return message.content.map((block) => (block.type === "text" ? block.text : "")).join("");
}

const stream = client.messages.stream({
  model,
  max_tokens: 512,
  messages: [{ role: "user", content: "Say hello" }],
});
let streamed = "";
let events = 0;
stream.on("text", (delta) => {
  streamed += delta;
});
stream.on("streamEvent", () => {
  events += 1;
});
const answer = await stream.finalMessage();

const question: Anthropic.MessageParam = {
  role: "user",
  content: "Run `printf conformance` with Bash, then tell me what it printed.",
};
const first = await client.messages.stream({ model, max_tokens: 1024, tools, messages: [question] }).finalMessage();
const calls = first.content.filter((block) => block.type === "tool_use");
const second = await client.messages.create({
  model,
  max_tokens: 1024,
  tools,
  messages: [
    question,
    { role: "assistant", content: first.content },
    {
      role: "user",
      content: calls.map((call) => ({ type: "tool_result" as const, tool_use_id: call.id, content: toolResult })),
    },
  ],
});

console.log(
  JSON.stringify({
    stream: { text: streamed, final_text: text(answer), stop_reason: answer.stop_reason, events },
    tool_calls: calls.map((call) => ({ name: call.name, input: call.input })),
    turns: [first, second].map((message) => ({ stop_reason: message.stop_reason, text: text(message) })),
  }),
);
