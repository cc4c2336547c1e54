"""The Python peer for the cold-start benchmark: a FastAPI app that imports
and builds what a Python version of rag-agent would at start-up (FastAPI,
boto3 clients for S3, DynamoDB, S3 Vectors and the Bedrock runtime, and a
strands-agents Agent with a Bedrock model), then answers GET /health.
No AWS call is made; the clients are only constructed, as ours are.

    uvicorn peer_app:app --port 8000     (from benches/)
"""

import boto3
from fastapi import FastAPI
from strands import Agent
from strands.models import BedrockModel

session = boto3.session.Session(region_name="us-east-1")
s3 = session.client("s3")
dynamodb = session.client("dynamodb")
s3vectors = session.client("s3vectors")
bedrock = session.client("bedrock-runtime")
agent = Agent(model=BedrockModel(model_id="anthropic.claude-3-5-sonnet-20240620-v1:0", boto_session=session),
              tools=[], callback_handler=None)

app = FastAPI(title="rag-agent peer")


@app.get("/health")
def health():
    return {"status": "ok"}
