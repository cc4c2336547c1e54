"""Fails when a role, policy or identity provider named in the templates
breaks the naming convention of Bedrock per use case:

    <OrgPrefix>-<Layer>-<UseCaseOrGroup>-<Capability>Role      ACME-GenAI-UseCaseA-BedrockInvokeRole
    <OrgPrefix>-<Layer>-<UseCaseOrGroup>-<ModelProvider>-InvokePolicy
    <OrgPrefix>-IdP-<ProviderName>                             (the provider's Name tag)
    <OrgPrefix>-GenAIGateway-TaskRole, -FunctionRole, -<Purpose>Policy

Each segment is a capitalised word of letters and digits. Names are read
from RoleName, ManagedPolicyName, PolicyName of IAM policies and an OIDC
provider's Name tag, with `!Sub` resolved against the parameters'
defaults. Resources that let CloudFormation generate their names are not
named by us and are skipped.

    python scripts/check_names.py [PATH ...]     # default: infra/
"""

import re
import sys
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent
WORD = r"[A-Z][A-Za-z0-9]*"
RULES = {
    "role": [
        re.compile(rf"^{WORD}-{WORD}-{WORD}-{WORD}Role$"),
        re.compile(rf"^{WORD}-GenAIGateway-(Task|Function)Role$"),
    ],
    "policy": [
        re.compile(rf"^{WORD}-{WORD}-{WORD}-{WORD}-InvokePolicy$"),
        re.compile(rf"^{WORD}-GenAIGateway-{WORD}Policy$"),
    ],
    "identity provider": [re.compile(rf"^{WORD}-IdP-{WORD}$")],
}
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "111122223333", "AWS::StackName": "Stack"}


def resolve(value, defaults):
    """A name as deployed with the parameters' defaults; None if it cannot
    be told without deploying."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref":
            return defaults.get(arg)
        if key == "Fn::Sub":
            text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            values = dict(defaults)
            for name, expr in extra.items():
                values[name] = resolve(expr, defaults)

            def sub(match):
                found = values.get(match.group(1))
                if found is None:
                    raise KeyError(match.group(1))
                return str(found)

            try:
                return re.sub(r"\$\{([^}!]+)\}", sub, text)
            except KeyError:
                return None
    return None


def names_in(template):
    defaults = dict(PSEUDO)
    for name, parameter in (template.get("Parameters") or {}).items():
        if "Default" in parameter:
            defaults[name] = parameter["Default"]
    for logical_id, resource in (template.get("Resources") or {}).items():
        kind = resource.get("Type", "")
        properties = resource.get("Properties") or {}
        if kind == "AWS::IAM::Role" and "RoleName" in properties:
            yield logical_id, "role", resolve(properties["RoleName"], defaults)
        elif kind == "AWS::IAM::ManagedPolicy" and "ManagedPolicyName" in properties:
            yield logical_id, "policy", resolve(properties["ManagedPolicyName"], defaults)
        elif kind == "AWS::IAM::Policy" and "PolicyName" in properties:
            yield logical_id, "policy", resolve(properties["PolicyName"], defaults)
        elif kind == "AWS::IAM::OIDCProvider":
            tags = {t.get("Key"): t.get("Value") for t in properties.get("Tags") or []}
            if "Name" not in tags:
                yield logical_id, "identity provider", "(no Name tag)"
            else:
                yield logical_id, "identity provider", resolve(tags["Name"], defaults)


def templates(paths):
    for path in paths:
        path = Path(path)
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
        for file in files:
            template, errors = decode(str(file))
            if errors or not isinstance(template, dict) or "Resources" not in template:
                continue
            yield file, template


def main(argv):
    paths = argv or [ROOT / "infra"]
    problems, checked = [], 0
    for file, template in templates(paths):
        for logical_id, kind, name in names_in(template):
            checked += 1
            if name is None:
                problems.append(f"{file}: {logical_id}: its {kind} name cannot be read from the parameters' defaults")
            elif not any(rule.match(name) for rule in RULES[kind]):
                problems.append(f"{file}: {logical_id}: {kind} name {name!r} breaks the naming convention")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"names: {checked} role, policy and identity provider names follow the convention")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
