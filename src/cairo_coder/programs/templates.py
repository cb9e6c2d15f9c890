"""Reference templates added to the generation context for contract- and test-related questions.

They show the shape of correct modern Cairo (2.x syntax, Starknet storage API, events, components, snforge),
so that the model does not fall back on the pre-2.0 syntax that dominates older material on the web.
"""

from __future__ import annotations

from pathlib import Path

from cairo_coder.errors import ConfigError

CONTRACT_TEMPLATE = """\
Template: a Starknet contract in modern Cairo 2.x (adapt names and logic; keep the structure and imports).

```cairo
use starknet::ContractAddress;

// The interface: a trait generic over the contract state; `self: @T` for views, `ref self: T` for writes.
#[starknet::interface]
pub trait ICounter<TContractState> {
    fn get(self: @TContractState) -> u128;
    fn contribution_of(self: @TContractState, account: ContractAddress) -> u128;
    fn increase(ref self: TContractState, amount: u128);
}

#[starknet::contract]
pub mod Counter {
    use openzeppelin_access::ownable::OwnableComponent;
    use starknet::storage::{
        Map, StorageMapReadAccess, StorageMapWriteAccess, StoragePointerReadAccess, StoragePointerWriteAccess,
    };
    use starknet::{ContractAddress, get_caller_address};

    // A component: its storage and events are embedded in the contract's.
    component!(path: OwnableComponent, storage: ownable, event: OwnableEvent);

    #[abi(embed_v0)]
    impl OwnableMixinImpl = OwnableComponent::OwnableMixinImpl<ContractState>;
    impl OwnableInternalImpl = OwnableComponent::InternalImpl<ContractState>;

    #[storage]
    struct Storage {
        value: u128,
        contributions: Map<ContractAddress, u128>,
        #[substorage(v0)]
        ownable: OwnableComponent::Storage,
    }

    #[event]
    #[derive(Drop, starknet::Event)]
    pub enum Event {
        Increased: Increased,
        #[flat]
        OwnableEvent: OwnableComponent::Event,
    }

    #[derive(Drop, starknet::Event)]
    pub struct Increased {
        #[key]
        pub caller: ContractAddress,
        pub amount: u128,
    }

    #[constructor]
    fn constructor(ref self: ContractState, owner: ContractAddress, initial: u128) {
        self.ownable.initializer(owner);
        self.value.write(initial);
    }

    #[abi(embed_v0)]
    impl CounterImpl of super::ICounter<ContractState> {
        fn get(self: @ContractState) -> u128 {
            self.value.read()
        }

        fn contribution_of(self: @ContractState, account: ContractAddress) -> u128 {
            self.contributions.read(account)
        }

        fn increase(ref self: ContractState, amount: u128) {
            assert(amount > 0, 'amount must be positive');
            let caller = get_caller_address();
            self.value.write(self.value.read() + amount);
            self.contributions.write(caller, self.contributions.read(caller) + amount);
            self.emit(Increased { caller, amount });
        }
    }
}
```
"""

TEST_TEMPLATE = """\
Template: testing a contract with Starknet Foundry (snforge), Cairo 2.x. `snforge_std` is a dev-dependency in
Scarb.toml; tests live in `tests/` or in a `#[cfg(test)]` module; run them with `snforge test`.

```cairo
use snforge_std::{
    ContractClassTrait, DeclareResultTrait, EventSpyAssertionsTrait, declare, spy_events,
    start_cheat_caller_address, stop_cheat_caller_address,
};
use starknet::ContractAddress;
use my_project::Counter;
use my_project::{ICounterDispatcher, ICounterDispatcherTrait};

fn deploy(owner: ContractAddress, initial: u128) -> ICounterDispatcher {
    let contract = declare("Counter").unwrap().contract_class();
    let calldata: Array<felt252> = array![owner.into(), initial.into()];
    let (contract_address, _) = contract.deploy(@calldata).unwrap();
    ICounterDispatcher { contract_address }
}

#[test]
fn test_increase_records_the_caller() {
    let owner: ContractAddress = 'owner'.try_into().unwrap();
    let alice: ContractAddress = 'alice'.try_into().unwrap();
    let counter = deploy(owner, 10);
    let mut spy = spy_events();

    start_cheat_caller_address(counter.contract_address, alice);
    counter.increase(5);
    stop_cheat_caller_address(counter.contract_address);

    assert_eq!(counter.get(), 15);
    assert_eq!(counter.contribution_of(alice), 5);
    let expected = Counter::Event::Increased(Counter::Increased { caller: alice, amount: 5 });
    spy.assert_emitted(@array![(counter.contract_address, expected)]);
}

#[test]
#[should_panic(expected: 'amount must be positive')]
fn test_zero_amount_panics() {
    let counter = deploy('owner'.try_into().unwrap(), 0);
    counter.increase(0);
}
```
"""

BUILTIN = {"contract": CONTRACT_TEMPLATE, "test": TEST_TEMPLATE}


class TemplateError(ConfigError):
    """A template setting names a file that cannot be read."""


def resolve_template(setting: str, kind: str) -> str:
    """The template text for an agent's setting: 'builtin', '' (none), or a path to a text file."""
    if setting == "builtin":
        return BUILTIN[kind]
    if not setting:
        return ""
    path = Path(setting).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"{kind}_template {setting!r} cannot be read: {exc.strerror or exc}") from None
