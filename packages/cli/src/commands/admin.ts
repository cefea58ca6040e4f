// Installation administration: admin rotate-key (AccessService.RotateSecretKey, ROLE_ADMIN).
import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';
import type { Context } from '../context.ts';

/** A new active secret key; control's stored secrets sealed again at once, the others' within seconds. */
export async function rotateKey(ctx: Context): Promise<void> {
  const response = await callUnary(ctx.clients.access, 'rotateSecretKey', {});
  ctx.emit(control.RotateSecretKeyResponse.toJSON(response), () => {
    ctx.out(`secret key ${response.keyId} is now active; control sealed ${response.resealed} stored values again`);
    ctx.out('the planner and deploy services seal theirs again within 5 s (their logs say how many)');
    ctx.out(`keys still readable: ${response.keyIds.join(', ')}`);
  });
}
