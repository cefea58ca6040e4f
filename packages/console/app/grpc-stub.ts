// The browser build's stand-in for @grpc/grpc-js: the generated protos define a Node gRPC client
// at load time; the console never uses it (it talks to control's JSON gateway), so a stub suffices.
export class Client {}
export function makeGenericClientConstructor(): typeof Client {
  return Client;
}
