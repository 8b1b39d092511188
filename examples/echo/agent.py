"""The echo agent: one skill, ``echo``, that returns its text input unchanged."""

from pydantic import BaseModel, Field

from guildnet.node.agent import FunctionAgent


class EchoInput(BaseModel):
    text: str = Field(description="Any text", max_length=100_000)


class EchoOutput(BaseModel):
    text: str = Field(description="The same text")


agent = FunctionAgent("echo", description="Returns its text input unchanged")


@agent.skill_handler(id="echo", name="Echo", tags=["text", "test"])
async def echo(data: EchoInput) -> EchoOutput:
    """Return the text input unchanged."""
    return EchoOutput(text=data.text)
