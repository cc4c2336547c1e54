"""The Python peer for the cold-start benchmark: a FastAPI app that imports
and builds what a Python version of rag-agent would at start-up (FastAPI,
boto3 clients for S3, DynamoDB, S3 Vectors and the Bedrock runtime, and a
strands-agents Agent with a Bedrock model), then answers GET /health.
At start-up no AWS call is made; the clients are only constructed, as
ours are. With DYNAMODB_TABLE_NAME set (the Lambda benchmark), /health
reads the document counter item, the one call rag-agent's /health makes on
DynamoDB.

    uvicorn peer_app:app --port 8000     (from benches/)
"""

import os

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


TABLE = os.environ.get("DYNAMODB_TABLE_NAME")


@app.get("/health")
def health():
    if TABLE is None:
        return {"status": "ok"}
    item = dynamodb.get_item(TableName=TABLE, Key={"PK": {"S": "STATS"}, "SK": {"S": "DOCUMENTS"}}).get("Item", {})
    return {"status": "ok", "document_count": int(item.get("document_count", {}).get("N", "0"))}
