"""Fails when rag-agent's runtime permissions differ between where they live.

The policy lives in infra/ as a standalone document for teams that deploy
with other tooling (the container image, Terraform); the SAM template
holds the same statements (its RuntimePolicy) because CloudFormation cannot
read local files. infra/fargate.yaml grants the ECS tasks the same
statements on the same shared resources, named there by parameters
(its TaskRole, with the log statement on its ExecutionRole, which writes
the container's output). Resource references are compared after mapping
each template's names for the shared resources onto one another.
"""

import json
import sys
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent

# How infra/fargate.yaml names what template.yaml creates.
FARGATE_NAMES = {
    "${VectorIndex.IndexArn}": "${VectorIndexArn}",
    "${MetadataTable.Arn}": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${MetadataTableName}",
    "${DocumentsBucket.Arn}": "arn:${AWS::Partition}:s3:::${DocumentsBucketName}",
    "${FunctionLogGroup.Arn}": "${TaskLogGroup.Arn}",
}


def load(path):
    template, errors = decode(str(ROOT / path))
    if errors:
        for error in errors:
            print(error, file=sys.stderr)
        sys.exit(1)
    return json.loads(json.dumps(template))


def canonical(value, names=None):
    """Intrinsics as the strings they stand for (`Ref X` is `${X}`,
    `GetAtt X.Y` is `${X.Y}`), with `names` substituted."""
    names = names or {}
    if isinstance(value, dict) and len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref":
            text = "${" + arg + "}"
        elif key == "Fn::GetAtt":
            text = "${" + (".".join(arg) if isinstance(arg, list) else arg) + "}"
        elif key == "Fn::Sub" and isinstance(arg, str):
            text = arg
        else:
            return {key: canonical(arg, names)}
        for old, new in names.items():
            text = text.replace(old, new)
        return text
    if isinstance(value, dict):
        return {k: canonical(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v, names) for v in value]
    return value


def fargate_statements():
    fargate = load("infra/fargate.yaml")["Resources"]
    statements = []
    for role in ("TaskRole", "ExecutionRole"):
        for policy in fargate[role]["Properties"].get("Policies", []):
            statements += policy["PolicyDocument"]["Statement"]
    return canonical(statements)


def main() -> int:
    template = load("template.yaml")
    inline = template["Resources"]["RuntimePolicy"]["Properties"]["PolicyDocument"]
    standalone = json.loads((ROOT / "infra/policies/rag-agent-runtime.json").read_text())
    standalone.pop("_comment", None)
    if inline != standalone:
        print("template.yaml RuntimePolicy differs from infra/policies/rag-agent-runtime.json", file=sys.stderr)
        return 1
    lambda_statements = canonical(inline["Statement"], FARGATE_NAMES)
    task_statements = fargate_statements()
    if lambda_statements != task_statements:
        print("infra/fargate.yaml's task and execution role statements differ from template.yaml's RuntimePolicy:", file=sys.stderr)
        print(json.dumps({"lambda": lambda_statements, "fargate": task_statements}, indent=1), file=sys.stderr)
        return 1
    print("runtime policy: template.yaml matches infra/policies/rag-agent-runtime.json and infra/fargate.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
