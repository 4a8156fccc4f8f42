// The open chat: header with the room's picture, name and actions; the messages, newest at
// the bottom; older days load when you scroll to the top; pictures can be dropped in.
import QtQuick 2.15
import QtQuick.Controls 2.15
import QtQuick.Dialogs 1.3 as Dialogs
import QtQuick.Layouts 1.15
import "."

Rectangle {
    id: root
    color: Theme.chatBackground

    ColumnLayout {
        anchors.fill: parent
        spacing: 0

        Rectangle {   // header
            Layout.fillWidth: true
            Layout.preferredHeight: 64
            color: Theme.chatBackground
            RowLayout {
                anchors.fill: parent
                anchors.leftMargin: 16
                anchors.rightMargin: 8
                spacing: 10
                Avatar {
                    size: 40
                    source: bridge.currentRoomImage
                    label: bridge.currentRoomName
                }
                Column {
                    Layout.fillWidth: true
                    Text {
                        text: bridge.currentRoomName
                        font.pixelSize: 16
                        font.bold: true
                        color: Theme.ink
                        elide: Text.ElideRight
                        width: parent.width
                    }
                    Text {
                        text: bridge.currentRoomMemberCount === 1 ? qsTr("1 member")
                              : qsTr("%1 members").arg(bridge.currentRoomMemberCount)
                        color: "#4A5A6A"
                        font.pixelSize: 12
                        TapHandler { onTapped: membersPopup.open() }
                        HoverHandler { cursorShape: Qt.PointingHandCursor }
                    }
                }
                IconButton {
                    glyph: "👥"
                    tip: qsTr("Members")
                    colour: Theme.ink
                    onClicked: membersPopup.open()
                }
                IconButton {
                    glyph: "＋"
                    tip: qsTr("Invite")
                    colour: Theme.ink
                    onClicked: inviteDialog.open()
                }
                IconButton {
                    id: menuButton
                    glyph: "☰"
                    tip: qsTr("Room settings")
                    colour: Theme.ink
                    onClicked: roomMenu.popup(menuButton, 0, menuButton.height)
                }
            }
        }

        Item {
            Layout.fillWidth: true
            Layout.fillHeight: true

            ListView {
                id: list
                objectName: "messageList"
                anchors.fill: parent
                model: bridge.messages
                // Newest is row 0 at the bottom: new messages keep the view pinned there, and
                // older history is added above without moving what is on screen.
                verticalLayoutDirection: ListView.BottomToTop
                clip: true
                reuseItems: true
                cacheBuffer: 800
                boundsBehavior: Flickable.StopAtBounds
                ScrollBar.vertical: ScrollBar {}
                delegate: MessageDelegate {
                    width: ListView.view.width
                    onImageClicked: viewer.show(source)
                }
                footer: Item {   // at the top: the start of the conversation
                    width: list.width
                    height: bridge.historyComplete ? 44 : 12
                    Text {
                        anchors.centerIn: parent
                        visible: bridge.historyComplete
                        text: qsTr("This is the beginning of the conversation")
                        color: "#5A6B7B"
                        font.pixelSize: 12
                    }
                }
                header: Item { width: list.width; height: 10 }

                // Near the top, ask for older days; the bridge ignores the call while a page
                // is loading or when the beginning is shown.
                function nearTop() { return contentY - originY < 300 }
                onContentYChanged: if (count > 0 && nearTop()) bridge.loadOlder()

                // At the newest message (the bottom). While it is, ListView keeps it there as
                // messages arrive; once scrolled up, the view stays put and the jump button shows.
                readonly property bool atNewest: count === 0 || contentHeight <= height || atYEnd
                    || originY + contentHeight - height - contentY < 2
                function showNewest() {
                    cancelFlick()
                    positionViewAtBeginning()
                }
            }
            // Opening a room, and sending (also a picture dropped or chosen in a dialog), go to
            // the newest message.
            Connections {
                target: bridge.messages
                function onRoomChanged() { list.showNewest() }
            }
            Connections {
                target: bridge
                function onMessageSent(seq) { list.showNewest() }
            }

            BusyIndicator {   // older history or the room's cached history is loading
                objectName: "historyIndicator"
                anchors.top: parent.top
                anchors.topMargin: 8
                anchors.horizontalCenter: parent.horizontalCenter
                width: 36; height: 36
                running: bridge.loadingHistory || bridge.loadingRoom
                visible: running
            }

            Button {   // jump to the newest message
                id: jump
                objectName: "jumpToLatest"
                visible: !list.atNewest && !bridge.loadingRoom
                anchors.right: parent.right
                anchors.bottom: parent.bottom
                anchors.rightMargin: 20
                anchors.bottomMargin: 16
                width: 40; height: 40
                contentItem: Text {
                    text: "↓"
                    font.pixelSize: 20
                    color: Theme.ink
                    horizontalAlignment: Text.AlignHCenter
                    verticalAlignment: Text.AlignVCenter
                }
                background: Rectangle { radius: 20; color: "white"; border.color: "#22000000" }
                onClicked: list.showNewest()
                ToolTip.visible: hovered
                ToolTip.text: qsTr("Jump to the latest message")
            }

            DropArea {   // drop picture files to send them
                id: drop
                anchors.fill: parent
                keys: ["text/uri-list"]
                onDropped: function(event) {
                    for (var i = 0; i < event.urls.length; ++i)
                        bridge.sendImage(event.urls[i].toString())
                    event.acceptProposedAction()
                }
                Rectangle {
                    anchors.fill: parent
                    anchors.margins: 8
                    visible: drop.containsDrag
                    color: "#55FFFFFF"
                    radius: 12
                    border.color: Theme.brown
                    border.width: 2
                    Text {
                        anchors.centerIn: parent
                        text: qsTr("Drop pictures to send them")
                        font.pixelSize: Theme.fontLarge
                        color: Theme.brown
                    }
                }
            }
        }

        Composer {
            Layout.fillWidth: true
            onSent: list.showNewest()
        }
    }

    Menu {
        id: roomMenu
        MenuItem { text: qsTr("Invite…"); onTriggered: inviteDialog.open() }
        MenuItem { text: qsTr("Rename…"); onTriggered: renameDialog.open() }
        MenuItem { text: qsTr("Set room picture…"); onTriggered: roomImageDialog.open() }
        MenuSeparator {}
        MenuItem { text: qsTr("Leave the room"); onTriggered: leaveDialog.open() }
    }
    TextPromptDialog {
        id: inviteDialog
        objectName: "inviteDialog"
        title: qsTr("Invite to %1").arg(bridge.currentRoomName)
        label: qsTr("User ids, separated by commas")
        placeholder: "kim, lee"
        onSubmitted: function(value) { bridge.inviteMembers(value) }
    }
    TextPromptDialog {
        id: renameDialog
        objectName: "renameDialog"
        title: qsTr("Rename the room")
        label: qsTr("Room name")
        initial: bridge.currentRoomName
        onSubmitted: function(value) { bridge.renameRoom(value) }
    }
    Dialog {
        id: leaveDialog
        anchors.centerIn: Overlay.overlay
        modal: true
        title: qsTr("Leave %1?").arg(bridge.currentRoomName)
        standardButtons: Dialog.Ok | Dialog.Cancel
        Label { text: qsTr("The conversation stays for the others.") }
        onAccepted: bridge.leaveRoom()
    }
    Dialogs.FileDialog {
        id: roomImageDialog
        title: qsTr("Room picture")
        nameFilters: [qsTr("Pictures (*.png *.jpg *.jpeg *.gif *.bmp *.webp)")]
        onAccepted: bridge.setRoomImage(fileUrl.toString())
    }
    MembersPopup { id: membersPopup; objectName: "membersPopup" }
    ImageViewer { id: viewer }
}
