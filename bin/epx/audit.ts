/** epx audit …: check the audit trail's HMAC chains. */
import { api, EXIT, query } from './client.js';
import { flag, type CommandGroup, type Invocation } from './command.js';
import { print } from './output.js';

interface Verification {
  valid: boolean;
  truncated: boolean;
  checked: number;
  chains: number;
  fromCheckpoint: number;
  problems: { chainId: string; seq: number; problem: string }[];
}

/** Exit 5 when the trail does not verify, so a cron job can alert on it. */
async function verify({ ctx, values }: Invocation) {
  const full = flag(values, 'full');
  const answer = (await api(ctx, 'GET', `/audit/verify${query({ full: full ? 'true' : undefined })}`)) as Verification;
  const scope = `${answer.checked} events in ${answer.chains} chains${full ? ', each from its first record' : `, ${answer.fromCheckpoint} from their last checkpoint`}`;
  print(ctx, answer, () =>
    answer.valid
      ? [`audit trail valid: ${scope}`]
      : [
          `audit trail NOT valid: ${answer.problems.length}${answer.truncated ? '+' : ''} problems (${scope})`,
          ...answer.problems.map((p) => `  ${p.chainId} #${p.seq}: ${p.problem}`),
        ],
  );
  return answer.valid ? EXIT.ok : EXIT.auditInvalid;
}

export const audit: CommandGroup = {
  name: 'audit',
  usage: `  audit verify [--full]                             check the audit trail's HMAC chains (exit 5 if it does not verify)`,
  options: { full: { type: 'boolean' } },
  commands: { verify },
};
