import type { control } from '@stageline/proto';

// The few fields of a bus.v1.DeploymentEvent control decides on before anything else — most events
// change nothing here and need no more — read straight off the wire, without decoding the run's
// stages and services. Field numbers: proto/stageline/bus/v1/events.proto (DeploymentEvent) and
// proto/stageline/control/v1/types.proto (Deployment).

export interface RunEventHead {
  /** `deployment.id` and `deployment.status`. */
  deployment: { id: string; environmentId: string; status: control.DeploymentStatus };
  /** `environment_status`. */
  status: control.EnvironmentStatus;
  sequence: number;
}

const VARINT = 0;
const FIXED64 = 1;
const BYTES = 2;
const FIXED32 = 5;

const text = new TextDecoder('utf-8', { fatal: true });

class Reader {
  readonly bytes: Uint8Array;
  readonly end: number;
  pos: number;
  constructor(bytes: Uint8Array, end: number, start = 0) {
    this.bytes = bytes;
    this.end = end;
    this.pos = start;
  }

  varint(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (this.pos >= this.end) throw new Error('truncated varint');
      const b = this.bytes[this.pos++]!;
      // Enums and uint32 fit in 32 bits; bits beyond are read over and dropped (as protobuf does).
      if (shift < 32) result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return shift < 32 ? result >>> 0 : result % 2 ** 32;
      shift += 7;
      if (shift > 63) throw new Error('varint too long');
    }
  }

  /** A length-delimited field's [start, end). */
  span(): [number, number] {
    const length = this.varint();
    const start = this.pos;
    if (start + length > this.end) throw new Error('truncated field');
    this.pos = start + length;
    return [start, start + length];
  }

  skip(wireType: number): void {
    if (wireType === VARINT) this.varint();
    else if (wireType === BYTES) this.span();
    else if (wireType === FIXED64) this.pos += 8;
    else if (wireType === FIXED32) this.pos += 4;
    else throw new Error(`wire type ${wireType}`);
    if (this.pos > this.end) throw new Error('truncated field');
  }
}

/** The head of an encoded DeploymentEvent; undefined when it has no deployment or is not one. */
export function readRunEventHead(bytes: Uint8Array): RunEventHead | undefined {
  try {
    const event = new Reader(bytes, bytes.length);
    let deployment: RunEventHead['deployment'] | undefined;
    let status = 0;
    let sequence = 0;
    while (event.pos < event.end) {
      const tag = event.varint();
      const field = tag >>> 3;
      const wireType = tag & 7;
      if (field === 3 && wireType === BYTES) {
        const [start, end] = event.span();
        deployment = readDeployment(bytes, start, end, deployment);
      } else if (field === 4 && wireType === VARINT) status = event.varint();
      else if (field === 5 && wireType === VARINT) sequence = event.varint();
      else event.skip(wireType);
    }
    return deployment === undefined ? undefined : { deployment, status: status as control.EnvironmentStatus, sequence };
  } catch {
    return undefined;
  }
}

/** A (possibly repeated: protobuf merges them) embedded Deployment's id, environment and status. */
function readDeployment(
  bytes: Uint8Array,
  start: number,
  end: number,
  into: RunEventHead['deployment'] | undefined,
): RunEventHead['deployment'] {
  const r = new Reader(bytes, end, start);
  const d = into ?? { id: '', environmentId: '', status: 0 };
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = tag >>> 3;
    const wireType = tag & 7;
    if ((field === 1 || field === 2) && wireType === BYTES) {
      const [s, e] = r.span();
      const value = text.decode(bytes.subarray(s, e));
      if (field === 1) d.id = value;
      else d.environmentId = value;
    } else if (field === 4 && wireType === VARINT) d.status = r.varint() as control.DeploymentStatus;
    else r.skip(wireType);
  }
  return d;
}
