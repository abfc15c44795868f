// The Anthropic TypeScript SDK pointed at trio-router: one answer, one stream, one token count.
//
//   cd examples/typescript && npm ci
//   ANTHROPIC_BASE_URL=http://127.0.0.1:3456 ANTHROPIC_API_KEY=your-router-APIKEY npm start
//
// The SDK reads ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY itself; the model name goes through the
// router's rules (or name a route directly: "provider,model").
import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({ maxRetries: 0 });
const model = process.env.MODEL ?? "claude-sonnet-4-5";
const messages: Anthropic.MessageParam[] = [{ role: "user", content: "Say hello" }];

const message = await client.messages.create({ model, max_tokens: 256, messages });
for (const block of message.content) {
  if (block.type === "text") console.log(`answer: ${block.text}`);
}
console.log(`usage: ${message.usage.input_tokens} in, ${message.usage.output_tokens} out`);

const stream = client.messages.stream({ model, max_tokens: 256, messages });
stream.on("text", (text) => process.stdout.write(text));
const final = await stream.finalMessage();
console.log(`\nstream stopped: ${final.stop_reason}`);

const count = await client.messages.countTokens({ model, messages });
console.log(`count_tokens: ${count.input_tokens}`);
