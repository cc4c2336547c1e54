"""Fails when template.yaml's runtime policy and infra/policies/ differ.

The policy lives in infra/ as a standalone document for teams that deploy
with other tooling (the container image, Terraform); the SAM template
holds the same statements (its RuntimePolicy) because CloudFormation cannot
read local files.
"""

import json
import sys
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    template, errors = decode(str(ROOT / "template.yaml"))
    if errors:
        for error in errors:
            print(error, file=sys.stderr)
        return 1
    policy = template["Resources"]["RuntimePolicy"]["Properties"]
    inline = json.loads(json.dumps(policy["PolicyDocument"]))
    standalone = json.loads((ROOT / "infra/policies/rag-agent-runtime.json").read_text())
    standalone.pop("_comment", None)
    if inline != standalone:
        print("template.yaml RuntimePolicy differs from infra/policies/rag-agent-runtime.json", file=sys.stderr)
        return 1
    print("runtime policy: template.yaml matches infra/policies/rag-agent-runtime.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
